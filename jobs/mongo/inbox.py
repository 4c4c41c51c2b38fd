"""The inbox: Flowroute's callbacks as the receiver stored them, until the daemon applies them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure

from jobs.mongo.connection import adapter
from jobs.mongo.poison import caused_by_document

Doc = dict[str, Any]
INBOX = "inbox"
NEW, WAITING, APPLIED, ORPHANED = "new", "waiting", "applied", "orphaned"


@adapter
class Inbox:
    """The receiver only inserts here (its role allows nothing else); the daemon reads entries,
    applies them idempotently and marks each one with what came of it."""

    def __init__(self, db: Database[Doc]) -> None:
        self.entries: Collection[Doc] = db[INBOX]

    def ensure_indexes(self) -> None:
        self.entries.create_index([("state", ASCENDING), ("retry_at", ASCENDING)], name="state")

    def add(self, kind: str, fields: Doc, now: datetime) -> None:
        """Store one validated callback (the receiver's only write)."""
        self.entries.insert_one({"kind": kind, "fields": fields, "received_at": now})

    def due(self, now: datetime, limit: int) -> list[Doc]:
        """Entries not applied yet: new ones first, then waiting ones whose retry is due."""
        fresh = list(self.entries.find({"state": None}).sort("_id", ASCENDING).limit(limit))
        if len(fresh) < limit:
            query = {"state": WAITING, "retry_at": {"$lte": now}}
            fresh += list(self.entries.find(query).limit(limit - len(fresh)))
        return fresh

    def applied(self, entry: Doc, now: datetime, outcome: str, reason: str | None = None) -> None:
        """Mark an entry done with `outcome`. An entry too large (or too odd) for the server to
        take even this mark loses its stored payload, so it is never read again."""
        mark: Doc = {"state": APPLIED, "applied_at": now, "outcome": outcome}
        if reason is not None:
            mark["reason"] = reason
        try:
            self.entries.update_one(
                {"_id": entry["_id"]}, {"$set": mark, "$unset": {"retry_at": ""}}
            )
        except OperationFailure as exc:
            if not caused_by_document(exc):
                raise
            self.entries.update_one(
                {"_id": entry["_id"]},
                {"$set": {**mark, "outcome": "invalid_document"},
                 "$unset": {"retry_at": "", "fields": ""}},
            )  # fmt: skip

    def wait(self, entry: Doc, now: datetime, delay: timedelta, horizon: timedelta) -> str:
        """Keep an entry aside to try again later; after `horizon` it is kept but orphaned."""
        received = entry.get("received_at")
        if isinstance(received, datetime) and now - received > horizon:
            self.entries.update_one(
                {"_id": entry["_id"]},
                {"$set": {"state": ORPHANED, "applied_at": now}, "$unset": {"retry_at": ""}},
            )
            return ORPHANED
        tries = int(entry.get("tries", 0)) if isinstance(entry.get("tries"), int) else 0
        self.entries.update_one(
            {"_id": entry["_id"]},
            {"$set": {"state": WAITING, "retry_at": now + delay}, "$inc": {"tries": 1}}
            if tries
            else {"$set": {"state": WAITING, "retry_at": now + delay, "tries": 1}},
        )
        return WAITING
