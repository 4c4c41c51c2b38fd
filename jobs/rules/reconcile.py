"""In-doubt sends: the time window to search Flowroute's records in, what counts as our message
there, and when its absence is proof. Pure functions."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sized
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobs.rules.callbacks import timestamp

# Flowroute's records take 3 to 10 s to become visible; absence is proof only well after that.
VISIBILITY = timedelta(seconds=60)
FOUND, ABSENT, WAIT = "found", "absent", "wait"


@dataclass(frozen=True)
class Window:
    """When Flowroute may have accepted the message, widened by the clock skew."""

    start: datetime
    end: datetime


def window(
    attempts: Iterable[tuple[datetime, datetime | None]],
    fallback: datetime,
    skew: timedelta,
    request_timeout: timedelta,
) -> Window:
    """The span of the in-doubt requests, from each one's opening to its settling (or to its
    timeout, if its worker died); `fallback` when no request left a ticket."""
    spans = [(opened, settled or opened + request_timeout) for opened, settled in attempts]
    if not spans:
        spans = [(fallback - request_timeout, fallback)]
    return Window(min(s for s, _ in spans) - skew, max(e for _, e in spans) + skew)


def ledger_spans(record: Mapping[str, Any] | None) -> list[tuple[datetime, datetime | None]]:
    """The request a spent-id record stands for, from when it was spent to when its outcome
    was recorded (open if never): the daemon writes both, no outbox writer can move them."""
    at = record.get("at") if record is not None else None
    if not isinstance(at, datetime):
        return []
    settled = record.get("settled_at") if record is not None else None
    return [(at, settled if isinstance(settled, datetime) else None)]


def ledger_provider_id(record: Mapping[str, Any] | None) -> str | None:
    """The provider id of the 202 a spent-id record holds, if it holds one."""
    found = record.get("provider_id") if record is not None else None
    return found if isinstance(found, str) and found else None


def matches(
    record: Mapping[str, Any], to: str, sources: Collection[str], body: str, span: Window
) -> bool:
    """Our message: outbound, same recipient, one of the sender's numbers, same text, in time."""
    when = timestamp(record.get("timestamp"))
    return (
        record.get("direction") == "outbound"
        and str(record.get("to", "")).lstrip("+") == to
        and str(record.get("from", "")).lstrip("+") in sources
        and record.get("body") == body
        and when is not None
        and span.start <= when <= span.end
    )


def decide(found: Sized, span: Window, now: datetime, visibility: timedelta = VISIBILITY) -> str:
    """FOUND when a matching record exists; ABSENT when none does and the window is far enough
    past for any record of it to be visible; otherwise WAIT and look again."""
    if found:
        return FOUND
    return ABSENT if now >= span.end + visibility else WAIT
