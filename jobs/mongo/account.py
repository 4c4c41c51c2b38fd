"""The account hold: whether Flowroute is refusing this installation's account, shared by every
daemon through the `daemon_state` collection, and the flag other components read.

Interface: `read(db)` and `is_held(db)` for anyone (status, health checks, metrics);
`AccountHold` for the daemon, which holds, probes and releases.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database

from jobs.clock import Clock
from jobs.mongo.connection import adapter, translating
from jobs.rules.hold import PROBE_BASE, PROBE_CAP, Hold, probe_delay

__all__ = ["STATE", "AccountHold", "Hold", "is_held", "read"]

STATE = "daemon_state"
HOLD_ID = "account_hold"


def _parse(doc: dict[str, Any] | None) -> Hold | None:
    if doc is None:
        return None
    since, probe_at, failures = doc.get("since"), doc.get("probe_at"), doc.get("failures")
    if not isinstance(since, datetime) or not isinstance(probe_at, datetime):
        return None
    failures = failures if isinstance(failures, int) and not isinstance(failures, bool) else 1
    return Hold(since, str(doc.get("code")), str(doc.get("detail")), probe_at, failures)


@translating
def read(db: Database[dict[str, Any]]) -> Hold | None:
    """The current hold, or None while the account is sending."""
    return _parse(db[STATE].find_one({"_id": HOLD_ID}))


@translating
def is_held(db: Database[dict[str, Any]]) -> bool:
    """The flag: True while Flowroute refuses the account and sending is stopped."""
    return read(db) is not None


@adapter
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
