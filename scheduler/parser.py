"""The `sms-outbox` command line: its commands and options, gathered from each command group."""

from __future__ import annotations

import argparse
from pathlib import Path

from scheduler.commands import messages, recipients, reports, senders, serve, tryout


def build_parser() -> argparse.ArgumentParser:
    """The command line; each subcommand carries its handler in `handler` (or `standalone`,
    for the commands that run without settings)."""
    parser = argparse.ArgumentParser(
        prog="sms-outbox",
        description="Send opt-in SMS through Flowroute from a MongoDB outbox."
        " `sms-outbox COMMAND --help` describes each command.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (or $SMS_OUTBOX_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (serve, senders, recipients, messages, reports, tryout):
        group.register(sub)
    return parser
