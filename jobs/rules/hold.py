"""The account hold's data and its probe backoff: pure, shared by the stores that keep it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

PROBE_BASE = timedelta(seconds=30)
PROBE_CAP = timedelta(minutes=10)


@dataclass(frozen=True)
class Hold:
    """Flowroute refused the account since `since` (`code`, `detail`); `probe_at` is when the
    next send may try again, after `failures` refusals in a row."""

    since: datetime
    code: str
    detail: str
    probe_at: datetime
    failures: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "held": True,
            "since": self.since,
            "code": self.code,
            "detail": self.detail,
            "probe_at": self.probe_at,
            "failures": self.failures,
        }


def probe_delay(
    failures: int, base: timedelta = PROBE_BASE, cap: timedelta = PROBE_CAP
) -> timedelta:
    """How long to wait before the next probe: doubling from `base` up to `cap`."""
    return min(cap, base * (1 << min(max(failures - 1, 0), 16)))
