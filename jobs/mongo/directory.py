"""The directory: who may send from which number (`authorized`) and who may be texted (`users`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any

import structlog
from bson import json_util
from bson.errors import BSONError
from bson.json_util import CANONICAL_JSON_OPTIONS
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure

from jobs.errors import InputError
from jobs.mongo import bson_types, importer
from jobs.mongo.connection import adapter
from jobs.mongo.importer import ImportSummary
from jobs.rules import identity, phone
from jobs.rules.identity import Audit, spellings
from jobs.rules.intake import check_max_priority, check_name, grant_priority

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.directory")

# Where a read of verified records starts: before every `_id`.
_START: Any = object()

AUTHORIZED = "authorized"
USERS = "users"


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

    def grant(self, user: str, number: str, *, max_priority: int | None = None) -> str:
        """Allow `user` to send from `number` (at priorities up to `max_priority`, when given);
        returns the normalised number. Idempotent."""
        check_name(user, "user")
        source = phone.normalize(number)
        update: Doc = {"$setOnInsert": {"user": user, "source": source}}
        if max_priority is not None:
            update["$set"] = {"max_priority": check_max_priority(max_priority)}
        self.authorized.update_one({"user": user, "source": source}, update, upsert=True)
        return source

    def max_priority(self, user: str) -> int:
        """The highest priority `user` may ask for: the highest `max_priority` of its grants
        (0 where a grant has none; 0 without a grant)."""
        docs = self.authorized.find({"user": user}, {"max_priority": 1})
        return max((grant_priority(doc) for doc in docs), default=0)

    def revoke(self, user: str, number: str | None = None) -> list[str]:
        """Take back `user`'s grant of `number`, or every grant without one; returns the
        numbers revoked. The daemons read grants once per cycle, so it holds from the next."""
        query: Doc = {"user": user}
        if number is not None:
            query["source"] = {"$in": spellings(phone.normalize(number))}
        revoked = sorted(str(doc.get("source")) for doc in self.authorized.find(query))
        self.authorized.delete_many(query)
        return revoked

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
            {"$set": {"verified": True, "consent": {"at": now, "source": by}}},
        )
        if result.matched_count == 0:
            raise InputError(f"{normalized} is not a recipient; add it first")
        self.end_opt_out(normalized, {"at": now, "source": by})
        return normalized

    def import_csv(
        self,
        handle: IO[str],
        *,
        verified: bool,
        now: datetime,
        source: str,
        progress: Callable[[int], None] | None = None,
    ) -> ImportSummary:
        """Add every number in the first column of a CSV (a header line is skipped), in chunks
        with bulk writes (jobs/mongo/importer.py); the indexes are made first, so the lookups
        of a fresh database are indexed too. `progress` is told each chunk's last line."""
        self.ensure_indexes()
        return importer.import_rows(
            self.users, importer.rows(handle), verified=verified, now=now,
            by=f"import:{source}", progress=progress,
        )  # fmt: skip

    def recipients(self) -> Iterator[Doc]:
        """Every recipient, one per number (its records taken together, see `recipient`, with
        the phones in another layout, which the daemon does not match, in `unmatched`), by
        number; records whose phone is not a number come last, as stored."""
        found = self.audit()
        for number in sorted(found.records):
            docs = found.records[number]
            merged = identity.view(number, docs)
            assert merged is not None
            # What the daemon does not see when it sends, until `recipients check --fix`.
            unmatched = [d["phone"] for d in docs if d.get("phone") not in spellings(number)]
            if unmatched:
                merged["unmatched"] = unmatched
            yield merged
        for doc_id, why in found.invalid:
            yield {"phone": None, "record": str(doc_id), "invalid": why}

    def recipient(self, number: str) -> Doc | None:
        """What the records of a normalised number say together, however each was spelled: a
        verified record gives consent, an opt-out on any record takes it away."""
        # One $in over the spellings, served by the phone index (FerretDB 1.x, which uses no
        # index for it, reads the whole collection instead).
        records = self.users.find({"phone": {"$in": spellings(number)}})
        return identity.view(number, records)

    def records(self, number: str) -> list[Doc]:
        """Every `users` record of a normalised number, however it was spelled, oldest first."""
        return list(self.users.find({"phone": {"$in": spellings(number)}}).sort("_id", ASCENDING))

    def consent_of(self, numbers: list[str]) -> dict[str, Doc | None]:
        """`recipient` for each normalised number, in one read: one $in over every spelling of
        every number, each record counted for the number whose spelling it holds."""
        owner = {spelling: number for number in numbers for spelling in spellings(number)}
        found: dict[str, list[Doc]] = {number: [] for number in numbers}
        for doc in self.users.find({"phone": {"$in": list(owner)}}):
            # `$in` also matches a record whose phone is a list holding one of the spellings:
            # such a record counts for each number it holds, as `recipient` counts it.
            stored = doc.get("phone")
            held = stored if isinstance(stored, list) else [stored]
            for number in dict.fromkeys(
                owner[p] for p in held if isinstance(p, str) and p in owner
            ):
                found[number].append(doc)
        return {number: identity.view(number, docs) for number, docs in found.items()}

    def verified_page(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """The phones, as stored, of up to `limit` verified records after `cursor`, and the
        cursor to read on from (None when there is nothing after it). Records are read in `_id`
        order, through the `_id` index, the one index every server scans in order and stops
        early: a page costs the same at the first record and the millionth. A record whose
        phone is not text is logged and skipped (`recipients check` lists it)."""
        last = _cursor_id(cursor)
        docs = self._records_after(last, limit)
        if len(docs) < limit and last is not _START:
            # A range on `_id` reads one BSON type; the records of later types come next.
            tail = docs[-1]["_id"] if docs else last
            docs += self._records_of_types(bson_types.after(tail), limit - len(docs))
        if not docs:
            return [], None
        numbers: list[str] = []
        for doc in docs:
            if isinstance(doc.get("phone"), str):
                numbers.append(doc["phone"])
            else:
                log.warning("recipient.invalid_phone", record=str(doc.get("_id")),
                            phone_type=type(doc.get("phone")).__name__)  # fmt: skip
        return numbers, json_util.dumps(docs[-1]["_id"], json_options=CANONICAL_JSON_OPTIONS)

    def _records_after(self, last: Any, limit: int) -> list[Doc]:
        query: Doc = {"verified": True}
        if last is not _START:
            query["_id"] = {"$gt": last}
        return _in_id_order(self.users, query, limit)

    def _records_of_types(self, types: list[Any], limit: int) -> list[Doc]:
        found: list[Doc] = []
        for condition in types:
            if len(found) >= limit:
                break
            query = {"verified": True, "_id": condition}
            found += _in_id_order(self.users, query, limit - len(found))
        return found

    def audit(self) -> Audit:
        """Every `users` record grouped by the number it stands for (see jobs.rules.identity)."""
        return identity.audit(self.users.find({}).sort("_id", ASCENDING))

    def fix(self, found: Audit) -> int:
        """Rewrite each number's records into one 11-digit record that keeps every consent and
        opt-out as evidence; returns how many numbers were rewritten. The merged record is
        written before the others are deleted, so a crash in between loses nothing."""
        fixed = 0
        for number, docs in found.to_fix().items():
            keep = next((d for d in docs if d.get("phone") == number), docs[0])
            self.users.replace_one({"_id": keep["_id"]}, identity.merged_record(number, docs))
            others = [d["_id"] for d in docs if d["_id"] != keep["_id"]]
            if others:
                self.users.delete_many({"_id": {"$in": others}})
            fixed += 1
        return fixed

    def opt_out(
        self, number: str, *, now: datetime, reason: str, evidence: Doc | None = None
    ) -> None:
        """Record that `number` must never be texted again, by any sender from any number."""
        record = {"at": now, "reason": reason, **(evidence or {})}
        # The latest opt-out is `opted_out`; every one is kept in `opt_outs`.
        self.users.update_many(
            {"phone": {"$in": spellings(number)}},
            {"$set": {"opted_out": record}, "$push": {"opt_outs": record}},
        )
        if self.users.find_one({"phone": {"$in": spellings(number)}}) is None:
            self.users.insert_one(
                {"phone": number, "verified": False, "opted_out": record, "opt_outs": [record]}
            )

    def confirm_opt_out(self, number: str, inbound_id: str, *, now: datetime) -> None:
        """Flowroute confirmed the STOP an opt-out recorded: say so on it and in its history."""
        where = {"phone": {"$in": spellings(number)}}
        self.users.update_many(
            {**where, "opted_out.inbound_id": inbound_id},
            {"$set": {"opted_out.confirmed": True, "opted_out.confirmed_at": now}},
        )
        self.users.update_many(
            {**where, "opt_outs.inbound_id": inbound_id},
            {"$set": {"opt_outs.$.confirmed": True, "opt_outs.$.confirmed_at": now}},
        )

    def end_opt_out(self, number: str, evidence: Doc) -> bool:
        """Consent given again after an opt-out (START, or an operator's `verify`): each record's
        opt-out in force is ended, not erased. `opted_in_again` names the opt-out it ends, so
        an opt-out recorded in the meantime stays in force; every one is kept in `opt_ins`.
        False when no opt-out was in force."""
        ended = False
        for doc in self.users.find({"phone": {"$in": spellings(number)}}):
            opted_out = identity.active_opt_out(doc)
            if not opted_out:
                continue
            again = {**evidence, "ends": identity.opt_out_key(opted_out)}
            self.users.update_one(
                {"_id": doc["_id"]},
                {"$set": {"opted_in_again": again}, "$push": {"opt_ins": again}},
            )
            ended = True
        return ended

    def is_source(self, number: str) -> bool:
        """Whether `number` is one any sender was granted: one of the installation's numbers."""
        return self.authorized.find_one({"source": {"$in": spellings(number)}}) is not None


def _cursor_id(cursor: str | None) -> Any:
    """The `_id` a page cursor names; one that does not parse starts over (a resumed fan-out
    then meets the messages already made and skips them)."""
    if cursor is None:
        return _START
    try:
        return json_util.loads(cursor, json_options=CANONICAL_JSON_OPTIONS)
    except (ValueError, TypeError, ArithmeticError, BSONError):
        return _START


def _in_id_order(users: Collection[Doc], query: Doc, limit: int) -> list[Doc]:
    """`limit` records in `_id` order, read through the `_id` index: left to itself,
    DocumentDB's planner reads every verified record by the `verified` index and sorts them."""
    fields = {"phone": 1}
    try:
        return list(users.find(query, fields).sort("_id", ASCENDING).limit(limit).hint("_id_"))
    except OperationFailure as exc:
        if "hint" not in str(exc):
            raise
    return list(users.find(query, fields).sort("_id", ASCENDING).limit(limit))
