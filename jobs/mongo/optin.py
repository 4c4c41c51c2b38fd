"""The opt-in store: pending codes (hashed), keyword joins, sign-up limits, and consent evidence.

Collections: `optin_codes` (one per code request, tries counted atomically), `optin_joins` (a
JOIN waiting for its YES), `optin_slots` and `optin_hours` (limits), `optin_events` (what was
asked and confirmed, kept for audits). Consent itself is written to `users`, as every other
path writes it, with each earlier consent and opt-out kept in `consents` and `opt_outs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

from jobs.mongo.connection import adapter
from jobs.rules import identity
from jobs.rules.identity import spellings
from jobs.rules.optin import Window

Doc = dict[str, Any]
CODES, JOINS, SLOTS, HOURS, EVENTS = (
    "optin_codes", "optin_joins", "optin_slots", "optin_hours", "optin_events",
)  # fmt: skip
# Pending codes and joins are deleted a day after they lapse; the evidence stays in `users`
# and `optin_events`.
KEEP_LAPSED = timedelta(days=1)


@adapter
class OptInStore:
    """Reads and writes the opt-in collections and the consent it leads to in `users`."""

    def __init__(self, db: Database[Doc]) -> None:
        self.db = db
        self.codes: Collection[Doc] = db[CODES]
        self.joins: Collection[Doc] = db[JOINS]
        self.slots: Collection[Doc] = db[SLOTS]
        self.hours: Collection[Doc] = db[HOURS]
        self.events: Collection[Doc] = db[EVENTS]
        self.users: Collection[Doc] = db["users"]
        self.outbox: Collection[Doc] = db["outbox"]

    def ensure_indexes(self) -> None:
        """TTL indexes purge lapsed codes, joins, slots and hour counters; safe to run again."""
        for collection in (self.codes, self.joins, self.hours):
            collection.create_index("purge_at", name="purge", expireAfterSeconds=0)
        self.slots.create_index("until", name="purge", expireAfterSeconds=0)
        self.joins.create_index([("phone", ASCENDING), ("at", DESCENDING)], name="phone")
        self.events.create_index([("phone", ASCENDING), ("at", ASCENDING)], name="phone")

    # Limits

    def take(self, window: Window, now: datetime) -> datetime | None:
        """Take one of the window's `limit` slots for `span`; the slot's previous expiry (to
        give it back), or None when every slot is in use. Each slot is one document, taken
        with one atomic write, so concurrent requests never share one."""
        until = now + window.span
        for index in range(window.limit):
            slot_id = f"{window.key}:{index}"
            taken = self.slots.find_one_and_update(
                {"_id": slot_id, "until": {"$lte": now}},
                {"$set": {"until": until}},
                return_document=ReturnDocument.BEFORE,
            )
            if taken is not None:
                previous = taken["until"]
                return previous if isinstance(previous, datetime) else now
            if self._insert_once(self.slots, {"_id": slot_id, "until": until}):
                return now
            # in use (or taken by a concurrent request just now): try the next slot
        return None

    def give_back(self, window: Window, taken_until: datetime, previous: datetime) -> None:
        """Return a slot taken by a request that was refused further on."""
        for index in range(window.limit):
            result = self.slots.update_one(
                {"_id": f"{window.key}:{index}", "until": taken_until},
                {"$set": {"until": previous}},
            )
            if result.modified_count:
                return

    def count_code(self, hour: datetime, cap: int) -> int | None:
        """Count one code in the global counter of `hour`; its new count, or None when the
        cap was already reached (nothing counted)."""
        doc_id = hour.isoformat()
        self._insert_once(
            self.hours, {"_id": doc_id, "count": 0, "purge_at": hour + timedelta(days=2)}
        )
        done = self.hours.find_one_and_update(
            {"_id": doc_id, "count": {"$lt": cap}},
            {"$inc": {"count": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return int(done["count"]) if done is not None else None

    def note_capped(self, hour: datetime) -> None:
        """Count a request the cap refused, for the metric the daemon serves."""
        self.hours.update_one({"_id": hour.isoformat()}, {"$inc": {"refused": 1}})

    @staticmethod
    def _insert_once(collection: Collection[Doc], doc: Doc) -> bool:
        """Insert `doc`; False when its _id exists. FerretDB reports a concurrent insert of the
        same _id as an internal error naming the duplicate key, not as 11000."""
        try:
            collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        except OperationFailure as exc:
            if "duplicate key" not in str(exc):
                raise
            return False
        return True

    def codes_in_hour(self, hour: datetime) -> int:
        return self.hour_counts(hour)[0]

    def hour_counts(self, hour: datetime) -> tuple[int, int]:
        """Codes (and YES prompts) sent in `hour`, and those refused by the global cap."""
        doc = self.hours.find_one({"_id": hour.isoformat()}) or {}
        count, refused = doc.get("count"), doc.get("refused")
        return (count if isinstance(count, int) else 0, refused if isinstance(refused, int) else 0)

    # Codes

    def add_code(self, doc: Doc) -> None:
        self.codes.insert_one({**doc, "tries": 0, "purge_at": doc["expires_at"] + KEEP_LAPSED})

    def try_code(self, request_id: str, number: str) -> Doc | None:
        """Count one try of a pending code and return it (with the try counted), or None when
        no pending code of that request and number exists."""
        return self.codes.find_one_and_update(
            {"_id": request_id, "phone": number, "confirmed_at": None},
            {"$inc": {"tries": 1}},
            return_document=ReturnDocument.AFTER,
        )

    def use_code(self, request_id: str, now: datetime) -> bool:
        """Mark a code used; False if another request used it first."""
        result = self.codes.update_one(
            {"_id": request_id, "confirmed_at": None}, {"$set": {"confirmed_at": now}}
        )
        return result.modified_count == 1

    def provider_id(self, message_id: str) -> str | None:
        """The Flowroute id of a message the daemon sent, once it was sent."""
        doc = self.outbox.find_one({"_id": message_id}, {"provider_id": 1}) or {}
        value = doc.get("provider_id")
        return value if isinstance(value, str) else None

    # Keyword joins

    def add_join(self, doc: Doc) -> None:
        self._insert_once(self.joins, {**doc, "purge_at": doc["expires_at"] + KEEP_LAPSED})

    def open_join(self, number: str, now: datetime) -> Doc | None:
        """The latest JOIN of `number` still waiting for its YES."""
        query = {"phone": number, "expires_at": {"$gt": now}, "confirmed_at": None}
        return self.joins.find_one(query, sort=[("at", DESCENDING)])

    def use_join(self, join_id: str, yes_id: str, now: datetime) -> bool:
        result = self.joins.update_one(
            {"_id": join_id, "confirmed_at": None},
            {"$set": {"confirmed_at": now, "yes_inbound_id": yes_id}},
        )
        return result.modified_count == 1

    # Consent

    def consent_of(self, number: str) -> list[Doc]:
        return list(self.users.find({"phone": {"$in": spellings(number)}}))

    def verify(self, number: str, evidence: Doc, now: datetime) -> None:
        """Record consent the phone confirmed: verified, with its evidence, added to the
        history. An opt-out in force ends as a START ends it (jobs/rules/identity.py): it stays
        on record, with `opted_in_again` naming it, never erased."""
        found = False
        for record in self.consent_of(number):
            found = True
            update: Doc = {
                "$set": {"verified": True, "consent": evidence},
                "$push": {"consents": evidence},
            }
            opted_out = identity.active_opt_out(record)
            if opted_out:
                again = {**evidence, "ends": identity.opt_out_key(opted_out)}
                update["$set"]["opted_in_again"] = again
                update["$push"]["opt_ins"] = again
            self.users.update_one({"_id": record["_id"]}, update)
        if not found:
            self.users.insert_one(
                {"phone": number, "verified": True, "consent": evidence, "consents": [evidence],
                 "created_at": now}
            )  # fmt: skip

    def record_event(self, number: str, event: str, now: datetime, **details: Any) -> None:
        self.events.insert_one({"phone": number, "event": event, "at": now, **details})

    def events_of(self, number: str) -> list[Doc]:
        return list(self.events.find({"phone": number}, {"_id": 0}).sort("at", ASCENDING))

    def texts_of(self, number: str) -> list[Doc]:
        """The texts `number` sent us, as the inbound log keeps them (with what came of each)."""
        fields = {"body": 1, "to": 1, "keyword": 1, "outcome": 1, "received_at": 1}
        return list(self.db["inbound"].find({"from": number}, fields).sort("received_at", 1))

    def numbers(self) -> list[str]:
        """Every number with a `users` record or an opt-in event, as stored."""
        found = {p for p in self.users.distinct("phone") if isinstance(p, str)}
        found |= {p for p in self.events.distinct("phone") if isinstance(p, str)}
        return sorted(found)

    def all_events(self) -> Iterator[Doc]:
        yield from self.events.find({}, {"_id": 0}).sort([("phone", ASCENDING), ("at", ASCENDING)])
