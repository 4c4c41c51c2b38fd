"""The inbox: Flowroute's callbacks as the receiver stored them, until the daemon applies them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure

from jobs.mongo.connection import adapter
from jobs.mongo.poison import caused_by_document

Doc = dict[str, Any]
INBOX = "inbox"
NEW, WAITING, APPLIED, ORPHANED = "new", "waiting", "applied", "orphaned"
# Kept, with reason `unverified`: Flowroute's record did not confirm it, so it changed nothing.
UNVERIFIED = "unverified"


@adapter
class Inbox:
    """The receiver only inserts here (its role allows nothing else); the daemon reads entries,
    applies them idempotently and marks each one with what came of it."""

    def __init__(self, db: Database[Doc]) -> None:
        self.entries: Collection[Doc] = db[INBOX]

    def ensure_indexes(self) -> None:
        self.entries.create_index([("state", ASCENDING), ("retry_at", ASCENDING)], name="state")
        self.entries.create_index(
            [("kind", ASCENDING), ("state", ASCENDING), ("retry_at", ASCENDING)], name="kind_state"
        )

    def add(self, kind: str, fields: Doc, now: datetime) -> None:
        """Store one validated callback (the receiver's only write)."""
        self.entries.insert_one({"kind": kind, "fields": fields, "received_at": now})

    def due(
        self, now: datetime, limit: int, only: str | None = None, besides: str | None = None
    ) -> list[Doc]:
        """Entries not applied yet: new ones first, then waiting ones whose retry is due; of the
        kind `only`, or of any kind `besides` that one."""
        where: Doc = {}
        if only is not None:
            where = {"kind": only}
        elif besides is not None:
            where = {"kind": {"$ne": besides}}
        fresh = list(
            self.entries.find({**where, "state": None}).sort("_id", ASCENDING).limit(limit)
        )
        if len(fresh) < limit:
            query = {**where, "state": WAITING, "retry_at": {"$lte": now}}
            fresh += list(
                self.entries.find(query).sort("retry_at", ASCENDING).limit(limit - len(fresh))
            )
        return fresh

    def applied(self, entry: Doc, now: datetime, outcome: str, reason: str | None = None) -> None:
        """Mark an entry done with `outcome` (and why, if it was set aside)."""
        mark: Doc = {"state": APPLIED, "applied_at": now, "outcome": outcome}
        clear: Doc = {"retry_at": "", "detail": ""}
        if reason is None:
            clear["reason"] = ""
        else:
            mark["reason"] = reason
        self._update(entry, now, {"$set": mark, "$unset": clear})

    def set_aside(self, entry: Doc, now: datetime, outcome: str | None, detail: str | None) -> None:
        """Keep an entry Flowroute's record did not confirm, with reason `unverified`."""
        self._update(
            entry, now,
            {"$set": {"state": UNVERIFIED, "reason": UNVERIFIED, "applied_at": now,
                      "outcome": outcome, "detail": detail},
             "$unset": {"retry_at": ""}},
        )  # fmt: skip

    def _update(self, entry: Doc, now: datetime, update: Doc) -> None:
        """Write an entry's mark. An entry too large (or too odd) for the server to take it
        loses its stored payload and is marked done, so it is never read again."""
        try:
            self.entries.update_one({"_id": entry["_id"]}, update)
        except OperationFailure as exc:
            if not caused_by_document(exc):
                raise
            self.entries.update_one(
                {"_id": entry["_id"]},
                {"$set": {"state": APPLIED, "applied_at": now, "outcome": "invalid_document"},
                 "$unset": {"retry_at": "", "detail": "", "fields": ""}},
            )  # fmt: skip

    def defer(self, entry: Doc, now: datetime) -> None:
        """Look at an entry again next cycle, without counting a try (no lookup was made)."""
        self._update(entry, now, {"$set": {"state": WAITING, "retry_at": now}})

    def unverified(self, limit: int) -> tuple[int, list[Doc]]:
        """How many callbacks Flowroute's records have not confirmed (set aside for good, or
        still being looked up: state `waiting`), and the latest few."""
        query = {"reason": UNVERIFIED}
        latest = self.entries.find(query, {"kind": 1, "fields": 1, "received_at": 1,
                                           "state": 1, "outcome": 1, "detail": 1})  # fmt: skip
        return self.entries.count_documents(query), list(
            latest.sort("_id", DESCENDING).limit(limit)
        )

    def wait(
        self,
        entry: Doc,
        now: datetime,
        delay: timedelta,
        horizon: timedelta | None = None,
        unconfirmed: str | None = None,
    ) -> str:
        """Keep an entry aside to try again later; after `horizon` it is kept but orphaned."""
        received = entry.get("received_at")
        if horizon is not None and isinstance(received, datetime) and now - received > horizon:
            self._update(
                entry, now,
                {"$set": {"state": ORPHANED, "applied_at": now}, "$unset": {"retry_at": ""}},
            )  # fmt: skip
            return ORPHANED
        tries = int(entry.get("tries", 0)) if isinstance(entry.get("tries"), int) else 0
        fields: Doc = {"state": WAITING, "retry_at": now + delay}
        if unconfirmed is not None:
            # Waiting for Flowroute's record: unverified until it confirms the callback.
            fields.update(reason=UNVERIFIED, detail=unconfirmed)
        self._update(
            entry, now,
            {"$set": fields, "$inc": {"tries": 1}} if tries else {"$set": {**fields, "tries": 1}},
        )  # fmt: skip
        return WAITING
