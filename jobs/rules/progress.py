"""A campaign's progress: its counts in a few buckets, whether it is over, and when it will be."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobs.rules import quiet_hours
from jobs.rules.quiet_hours import Window

WAITING = frozenset({"queued", "sending"})
BUCKETS: Mapping[str, frozenset[str]] = {
    "sent": frozenset({"sent"}),
    "delivered": frozenset({"delivered"}),
    "failed": frozenset({"failed", "undelivered", "expired"}),
    "rejected": frozenset({"rejected"}),
    "waiting": WAITING,
    "cancelled": frozenset({"cancelled"}),
}
# A broadcast request in these states has made (or will never make) all its messages.
REQUEST_SETTLED = frozenset({"expanded", "rejected", "failed", "cancelled"})


@dataclass(frozen=True)
class Progress:
    """Counts by bucket (`other` holds unknown and any state added later) and the total."""

    counts: dict[str, int]
    total: int
    done: bool
    cancelled: bool = False  # an operator stopped the campaign before all of it was sent

    @property
    def ended(self) -> str | None:
        """How it ended, `cancelled` or `done`, or None while it runs."""
        return "cancelled" if self.cancelled else "done" if self.done else None

    @property
    def finished(self) -> int:
        return self.total - self.counts["waiting"]

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else (1.0 if self.done else 0.0)


def progress(states: Mapping[str, int], request_state: str | None) -> Progress:
    """Bucket a campaign's state counts; it is done once its request settled and nothing waits."""
    counts = dict.fromkeys([*BUCKETS, "other"], 0)
    for state, count in states.items():
        bucket = next((name for name, members in BUCKETS.items() if state in members), "other")
        counts[bucket] += count
    settled = request_state is None or request_state in REQUEST_SETTLED
    done = settled and counts["waiting"] == 0
    # Stopped by an operator: its request before the fan-out, or its messages after it.
    cancelled = done and (request_state == "cancelled" or counts["cancelled"] > 0)
    return Progress(counts, sum(states.values()), done, cancelled)


def delivery_rate(states: Mapping[str, int]) -> float | None:
    """Delivered among messages with a final receipt; None before any receipt."""
    delivered = states.get("delivered", 0)
    final = delivered + states.get("undelivered", 0) + states.get("expired", 0)
    return delivered / final if final else None


def eta(
    now: datetime,
    waiting: Iterable[tuple[datetime, str]],
    rate_per_second: float | None,
    window: Window | None,
) -> datetime | None:
    """When the last waiting message should go: each waits for its due time and its recipient's
    allowed hours, and the account sends at most `rate_per_second` (None: no limit).

    `waiting` holds (due time, number) pairs. Numbers of one area code share their hours, so
    the allowed hours are worked out once per area code and due minute.
    """
    allowed: dict[tuple[str, datetime], datetime] = {}
    times: list[datetime] = []
    for due, number in waiting:
        start = max(due, now)
        if window is not None and len(number) == 11:
            key = (number[:4], start.replace(second=0, microsecond=0))
            if key not in allowed:
                try:
                    allowed[key] = quiet_hours.next_allowed(start, number, window) or start
                except ValueError:
                    allowed[key] = start
            start = max(start, allowed[key])
        times.append(start)
    if not times:
        return None
    step = timedelta(seconds=1 / rate_per_second) if rate_per_second else timedelta(0)
    finish = now
    for start in sorted(times):
        finish = max(finish, start) + step
    return finish
