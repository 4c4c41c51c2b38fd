"""Quiet hours: when a recipient may be texted, judged by the local time wherever they may be."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

from jobs.rules.phone import is_normalized

STRICTEST_US_ZONES: tuple[str, ...] = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
)

_UNKNOWN_ZONE = "Etc/Unknown"
_HORIZON = timedelta(days=3)
# No zone changes its offset twice within this step, so one bisection per step finds every change.
_SCAN_STEP = timedelta(hours=6)


class NoAllowedHours(ValueError):
    """The zones a number may be in share no instant inside the window in the coming days."""


@dataclass(frozen=True)
class Window:
    """Local wall-clock hours in which texting is allowed: `start` inclusive, `end` exclusive."""

    start: time = time(8, 0)
    end: time = time(21, 0)

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("window times are local wall-clock times and must not carry a tzinfo")
        if not self.start < self.end:
            raise ValueError(f"window start {self.start} must be before its end {self.end}")

    def contains(self, local: time) -> bool:
        """True when the wall-clock time `local` is inside the window."""
        return self.start <= local < self.end


@functools.lru_cache(maxsize=4096)
def zones_for(number: str) -> tuple[ZoneInfo, ...]:
    """Zones an 11-digit NANP number may be in, by area code; the strictest US set if unknown."""
    if not is_normalized(number):
        raise ValueError(f"{number!r} is not an 11-digit North American number")
    parsed = phonenumbers.parse("+" + number)
    # Non-geographic numbers (toll-free, 5XX) get phonenumbers' whole-NANP list, Guam to
    # Newfoundland: it says nothing about the recipient and leaves too narrow a common window.
    if not phonenumbers.is_number_geographical(parsed):
        return _strictest()
    names = phone_timezone.time_zones_for_number(parsed)
    if not names or _UNKNOWN_ZONE in names:
        return _strictest()
    try:
        return tuple(ZoneInfo(name) for name in names)
    except (ZoneInfoNotFoundError, ValueError):
        return _strictest()


def next_allowed(now: datetime, number: str, window: Window) -> datetime | None:
    """None if `number` may be texted at `now`; otherwise the earliest later UTC instant it may be.

    With several possible zones the instant must be inside the window in every one of them.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    zones = zones_for(number)
    if _inside_everywhere(now, zones, window):
        return None
    limit = now + _HORIZON
    candidates = sorted(
        {instant for zone in zones for instant in _changes(zone, window, now, limit)}
    )
    for instant in candidates:
        if now < instant <= limit and _inside_everywhere(instant, zones, window):
            return instant
    raise NoAllowedHours(
        f"the zones of {number} share no {window.start:%H:%M}-{window.end:%H:%M} window"
        f" within {_HORIZON.days} days"
    )


# A winter and a summer day: the strictest zones are furthest apart on one of them.
_SEASONS = (datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC))


def holds_everywhere(window: Window) -> bool:
    """True when some instant of every season is inside `window` in all the strictest US zones
    at once, so that a number whose zone is unknown (toll-free) can be texted at all."""
    zones = _strictest()
    for day in _SEASONS:
        # The window opens everywhere at once, if ever, when its start reaches some zone.
        starts = (
            datetime.combine((day + timedelta(days=1)).astimezone(zone).date(), window.start, zone)
            for zone in zones
        )
        if not any(_inside_everywhere(start.astimezone(UTC), zones, window) for start in starts):
            return False
    return True


def _strictest() -> tuple[ZoneInfo, ...]:
    return tuple(ZoneInfo(name) for name in STRICTEST_US_ZONES)


def _inside_everywhere(instant: datetime, zones: tuple[ZoneInfo, ...], window: Window) -> bool:
    return all(window.contains(instant.astimezone(zone).time()) for zone in zones)


def _changes(zone: ZoneInfo, window: Window, now: datetime, limit: datetime) -> Iterator[datetime]:
    """Every instant near [now, limit] at which `zone` may enter or leave the window.

    Those are the wall clock reaching start or end (twice for a repeated hour) and the offset
    changes themselves: a start inside a skipped hour is first reached when the clock jumps.
    """
    first = now.astimezone(zone).date() - timedelta(days=1)
    last = limit.astimezone(zone).date() + timedelta(days=1)
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        for boundary in (window.start, window.end):
            for fold in (0, 1):
                local = datetime.combine(day, boundary.replace(fold=fold), tzinfo=zone)
                yield local.astimezone(UTC)
    yield from _offset_changes(zone, now, limit)


def _offset_changes(zone: ZoneInfo, start: datetime, limit: datetime) -> Iterator[datetime]:
    """The UTC instants in (start, limit] at which `zone` changes its UTC offset, to the second."""
    low = start
    while low < limit:
        high = min(low + _SCAN_STEP, limit)
        if low.astimezone(zone).utcoffset() != high.astimezone(zone).utcoffset():
            yield _bisect_change(zone, low, high)
        low = high


def _bisect_change(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    # Offsets change on whole seconds, so whole-second ends keep the bracket and give an exact edge.
    before = low.astimezone(zone).utcoffset()
    low_s, high_s = math.floor(low.timestamp()), math.ceil(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == before:
            low_s = middle
        else:
            high_s = middle
    return datetime.fromtimestamp(high_s, UTC)
