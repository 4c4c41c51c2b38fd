"""What every command shares: exit codes, printing for people and for scripts, the operator."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jobs.rules import intake
from scheduler.settings import Settings
from scheduler.surfaces import watch

Handler = Callable[[argparse.Namespace, Settings], int]
# Commands that run before (and without) the settings: the demo and the simulator.
Standalone = Callable[[argparse.Namespace], int]
Subparsers = Any  # argparse's _SubParsersAction, which it does not export

# sysexits.h codes, so scripts and supervisors can tell failures apart.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_NOT_FOUND = EXIT_FAILURE
EXIT_UNAVAILABLE, EXIT_CONFIG = 69, 78
EXIT_INTERRUPTED = 130


def command(
    sub: Subparsers, name: str, summary: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand with its one-line summary (in `sms-outbox --help`) and a description (in
    its own `--help`)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=description or summary[:1].upper() + summary[1:] + "."
    )
    return parser


def json_value(value: Any) -> Any:
    """Dates as ISO-8601 UTC; ids and anything else as text."""
    return watch.iso(value) if isinstance(value, datetime) else str(value)


def emit(value: Any, as_json: bool) -> None:
    """Print `value` as indented JSON for scripts, or a list line by line for people."""
    if as_json:
        print(json.dumps(value, default=json_value, indent=2, sort_keys=True, ensure_ascii=False))
    elif isinstance(value, list):
        for item in value:
            print(item)
    else:
        print(value)


def operator(given: str | None) -> str:
    """Who runs the command, for the record: `--by`, or the operating-system user."""
    if given:
        return intake.check_name(given, "--by")
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        return f"uid {os.getuid()}"
