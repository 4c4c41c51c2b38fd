"""The directory: who may send from which number (`authorized`) and who may be texted (`users`)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from jobs.errors import InputError
from jobs.mongo.connection import adapter, translated
from jobs.rules import phone
from jobs.rules.intake import check_name

Doc = dict[str, Any]

AUTHORIZED = "authorized"
USERS = "users"


def spellings(number: str) -> list[str]:
    """Ways an existing database may have stored a normalised number."""
    return [number, "+" + number, number[1:]]


@dataclass(frozen=True)
class ImportReport:
    """What `recipients import` did: numbers added or updated, and lines refused with why."""

    added: int
    refused: list[tuple[int, str]]


@adapter
class Directory:
    """Reads and writes `authorized` and `users`, in the original article's shape."""

    def __init__(self, db: Database[Doc]) -> None:
        self.authorized: Collection[Doc] = db[AUTHORIZED]
        self.users: Collection[Doc] = db[USERS]

    def ensure_indexes(self) -> None:
        """Indexes for the lookups made on every send; safe to run again."""
        self.authorized.create_index([("user", ASCENDING)], name="user")
        self.users.create_index([("phone", ASCENDING)], name="phone")
        self.users.create_index([("verified", ASCENDING), ("phone", ASCENDING)], name="verified")

    # Senders

    def grant(self, user: str, number: str) -> str:
        """Allow `user` to send from `number`; returns the normalised number. Idempotent."""
        check_name(user, "user")
        source = phone.normalize(number)
        self.authorized.update_one(
            {"user": user, "source": source},
            {"$setOnInsert": {"user": user, "source": source}},
            upsert=True,
        )
        return source

    def sources_for(self, user: str) -> list[str]:
        """The numbers `user` may send from, oldest grant first."""
        docs = self.authorized.find({"user": user}).sort("_id", ASCENDING)
        return [str(doc["source"]) for doc in docs if doc.get("source")]

    def senders(self) -> list[Doc]:
        """Every grant, by user."""
        return list(self.authorized.find({}, {"_id": 0}).sort([("user", 1), ("source", 1)]))

    # Recipients

    def add(self, number: str, *, verified: bool, now: datetime, by: str = "cli") -> str:
        """Add a recipient (or update one); `verified` records consent with when and by whom."""
        normalized = phone.normalize(number)
        fields: Doc = {"phone": normalized}
        if verified:
            fields.update(verified=True, consent={"at": now, "source": by})
        self.users.update_one(
            {"phone": {"$in": spellings(normalized)}},
            {"$set": fields, "$setOnInsert": {"created_at": now}}
            if verified
            else {"$setOnInsert": {**fields, "verified": False, "created_at": now}},
            upsert=True,
        )
        return normalized

    def verify(self, number: str, *, now: datetime, by: str = "cli") -> str:
        """Record a recipient's consent (a fresh opt-in also ends an earlier opt-out); raises
        InputError for an unknown number."""
        normalized = phone.normalize(number)
        result = self.users.update_many(
            {"phone": {"$in": spellings(normalized)}},
            {
                "$set": {"verified": True, "consent": {"at": now, "source": by}},
                "$unset": {"opted_out": ""},
            },
        )
        if result.matched_count == 0:
            raise InputError(f"{normalized} is not a recipient; add it first")
        return normalized

    def import_csv(self, path: Path, *, verified: bool, now: datetime) -> ImportReport:
        """Add every number in the first column of a CSV file (a header line is skipped)."""
        added = 0
        refused: list[tuple[int, str]] = []
        with path.open(newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.reader(handle), start=1):
                if not row or not row[0].strip():
                    continue
                verified_here = verified or _truthy(row[1] if len(row) > 1 else "")
                try:
                    self.add(row[0], verified=verified_here, now=now, by=f"import:{path.name}")
                except InputError as exc:
                    if line == 1 and not any(ch.isdigit() for ch in row[0]):
                        continue
                    refused.append((line, str(exc)))
                else:
                    added += 1
        return ImportReport(added, refused)

    def recipients(self) -> Iterator[Doc]:
        """Every recipient, by number."""
        with translated():
            yield from self.users.find({}, {"_id": 0}).sort("phone", ASCENDING)

    def recipient(self, number: str) -> Doc | None:
        """The recipient record for a normalised number, whichever way it was stored."""
        return self.users.find_one({"phone": {"$in": spellings(number)}})

    def verified_after(self, after: str | None, limit: int) -> list[str]:
        """Up to `limit` verified numbers, as stored, that sort after `after`."""
        query: Doc = {"verified": True}
        if after is not None:
            query["phone"] = {"$gt": after}
        docs = self.users.find(query, {"phone": 1}).sort("phone", ASCENDING).limit(limit)
        return [doc["phone"] for doc in docs if isinstance(doc.get("phone"), str)]

    def opt_out(self, number: str, *, now: datetime, reason: str) -> None:
        """Record that `number` must never be texted again, by any sender from any number."""
        self.users.update_many(
            {"phone": {"$in": spellings(number)}},
            {"$set": {"opted_out": {"at": now, "reason": reason}}},
        )
        if self.users.find_one({"phone": {"$in": spellings(number)}}) is None:
            self.users.insert_one(
                {"phone": number, "verified": False, "opted_out": {"at": now, "reason": reason}}
            )


def _truthy(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "y", "verified"}
