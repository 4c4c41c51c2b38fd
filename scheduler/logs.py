"""Logging: structlog events with keys, JSON or console, with every secret value redacted and
phone numbers masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"


class Redactor:
    """A processor that replaces every known secret value, wherever it appears in an event."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is removed whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            event[key] = self._clean(value)
        return event

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, MutableMapping):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self._clean(str(value))


# A phone number as people and Flowroute write it: 10 to 15 digits, maybe with a `+`, spaces,
# dots, dashes and parentheses, standing alone (not part of an id such as an ObjectId).
_NUMBER = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{8,22}\d(?![\w])")
MASK = "*"
SHOWN_DIGITS = 4


def mask_numbers(text: str) -> str:
    """`text` with every phone number in it reduced to its last four digits."""

    def hide(match: re.Match[str]) -> str:
        found = match.group(0)
        digits = sum(ch.isdigit() for ch in found)
        if not 10 <= digits <= 15:
            return found
        return MASK * (digits - SHOWN_DIGITS) + "".join(c for c in found if c.isdigit())[-4:]

    return _NUMBER.sub(hide, text)


class NumberMasker:
    """A processor that masks phone numbers in every text value of an event (the time stamp
    aside): who was texted is not an operator's business by default (`logging.mask_numbers`)."""

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            if key != "timestamp":
                event[key] = self._mask(value)
        return event

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            return mask_numbers(value)
        if isinstance(value, MutableMapping):
            return {k: self._mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._mask(v) for v in value]
        return value


def configure(
    level: str = "info",
    fmt: str = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    *,
    mask: bool = True,
) -> None:
    """Set up structlog for the whole process; `mask` hides phone numbers."""
    out = stream or sys.stderr
    json_output = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *([NumberMasker()] if mask else []),
            Redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
