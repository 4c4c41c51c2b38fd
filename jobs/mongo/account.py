"""The account hold: whether Flowroute is refusing this installation's account, shared by every
daemon through the `daemon_state` collection, and the flag other components read.

Interface: `read(db)` and `is_held(db)` for anyone (status, health checks, metrics);
`AccountHold` for the daemon, which holds, probes and releases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database

from jobs.clock import Clock

STATE = "daemon_state"
HOLD_ID = "account_hold"
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


def _parse(doc: dict[str, Any] | None) -> Hold | None:
    if doc is None:
        return None
    since, probe_at, failures = doc.get("since"), doc.get("probe_at"), doc.get("failures")
    if not isinstance(since, datetime) or not isinstance(probe_at, datetime):
        return None
    failures = failures if isinstance(failures, int) and not isinstance(failures, bool) else 1
    return Hold(since, str(doc.get("code")), str(doc.get("detail")), probe_at, failures)


def read(db: Database[dict[str, Any]]) -> Hold | None:
    """The current hold, or None while the account is sending."""
    return _parse(db[STATE].find_one({"_id": HOLD_ID}))


def is_held(db: Database[dict[str, Any]]) -> bool:
    """The flag: True while Flowroute refuses the account and sending is stopped."""
    return read(db) is not None


class AccountHold:
    """Holds and releases the account for every daemon sharing the database."""

    def __init__(
        self,
        db: Database[dict[str, Any]],
        clock: Clock,
        base: timedelta = PROBE_BASE,
        cap: timedelta = PROBE_CAP,
    ) -> None:
        self.state: Collection[dict[str, Any]] = db[STATE]
        self.db = db
        self.clock = clock
        self.base, self.cap = base, cap

    def current(self) -> Hold | None:
        return read(self.db)

    def hold(self, code: str, detail: str) -> Hold:
        """Record a refusal: held from now (or since the first refusal), probing later each time."""
        now = self.clock.now()
        doc = self.state.find_one_and_update(
            {"_id": HOLD_ID},
            {
                "$set": {"code": code, "detail": detail, "updated_at": now},
                "$setOnInsert": {"since": now},
                "$inc": {"failures": 1},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        failures = doc.get("failures") if doc is not None else 1
        count = failures if isinstance(failures, int) and not isinstance(failures, bool) else 1
        probe_at = now + probe_delay(count, self.base, self.cap)
        self.state.update_one({"_id": HOLD_ID}, {"$set": {"probe_at": probe_at}})
        since = doc.get("since") if doc is not None else None
        return Hold(since if isinstance(since, datetime) else now, code, detail, probe_at, count)

    def release(self) -> bool:
        """The account works again; True if it was held."""
        return self.state.delete_one({"_id": HOLD_ID}).deleted_count > 0
