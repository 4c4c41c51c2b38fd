"""The `audit` collection: who signed in (or failed to), sent and cancelled, when and from where."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from jobs.mongo.connection import adapter

Doc = dict[str, Any]
AUDIT = "audit"
ACTIONS = ("sign_in", "sign_in_failed", "sign_out", "send", "send_message", "cancel")


@adapter
class AuditLog:
    """Appends one document per event; nothing here updates or deletes."""

    def __init__(self, db: Database[Doc]) -> None:
        self.events: Collection[Doc] = db[AUDIT]

    def ensure_indexes(self) -> None:
        self.events.create_index([("at", DESCENDING)], name="at")
        self.events.create_index([("who", 1), ("action", 1), ("at", DESCENDING)], name="who")

    def record(
        self, action: str, who: str | None, address: str | None, now: datetime, **what: Any
    ) -> None:
        """Keep one event: `action` (one of ACTIONS), by `who`, from `address`, with details."""
        self.events.insert_one(
            {"action": action, "who": who, "address": address, "at": now, "what": what}
        )

    def count_since(self, who: str, action: str, since: datetime) -> int:
        """How many `action` events `who` has caused since then (the hourly send limit)."""
        return self.events.count_documents({"who": who, "action": action, "at": {"$gte": since}})

    def recent(self, limit: int = 200) -> list[Doc]:
        """The newest events first."""
        return list(self.events.find({}, {"_id": 0}).sort("at", DESCENDING).limit(limit))
