"""The `sms-outbox` command: a thin layer over the functions producers and the daemon use."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jobs.errors import ConfigError, InputError, StoreError
from jobs.mongo import failures
from scheduler import logs
from scheduler.commands.output import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Handler,
    Standalone,
)
from scheduler.parser import build_parser
from scheduler.settings import load_settings, unknown_environment


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        standalone: Standalone | None = getattr(args, "standalone", None)
        if standalone is not None:
            return standalone(args)
        return _with_settings(args)
    except BrokenPipeError:
        # `sms-outbox ... --json | head`: the reader left; nothing more is worth saying.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _with_settings(args: argparse.Namespace) -> int:
    secrets: list[str] = []
    unknown = unknown_environment(dict(os.environ))
    if unknown:
        print(
            "sms-outbox: warning: no such setting, ignored: "
            + ", ".join(unknown)
            + " (settings are SMS_OUTBOX_<SECTION>__<KEY>; see config.example.toml)",
            file=sys.stderr,
        )
    try:
        settings = load_settings(args.config, dict(os.environ))
        secrets = settings.secrets()
        level = settings.logging.level
        if not getattr(args, "daemon", False) and level.lower() == "info":
            level = "warning"  # one-off commands print their result; daemons log what they do
        logs.configure(level, settings.logging.format, secrets, mask=settings.logging.mask_numbers)
        handler: Handler = args.handler
        return handler(args, settings)
    except ConfigError as exc:
        print(f"sms-outbox: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as exc:
        print(f"sms-outbox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        failure = failures.explain(exc, secrets)
        assert failure is not None
        print(f"sms-outbox: {failure.line}", file=sys.stderr)
        return EXIT_CONFIG if failure.config else EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
