"""Inbound messages as the daemon keeps them for operators, with what was done about each."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from jobs.model import State
from jobs.mongo.connection import adapter

Doc = dict[str, Any]
INBOUND = "inbound"
# The daemon's own texts (replies, opt-in codes and prompts) are not the program's messages.
DAEMON_TEXTS = ("reply:", "optin:")
SENT_STATES = [s.value for s in (State.SENT, State.DELIVERED, State.UNDELIVERED, State.EXPIRED)]


@adapter
class InboundLog:
    """One document per inbound message, keyed by Flowroute's id, so a resent one is seen once."""

    def __init__(self, db: Database[Doc]) -> None:
        self.messages: Collection[Doc] = db[INBOUND]
        self.outbox: Collection[Doc] = db["outbox"]

    def ensure_indexes(self) -> None:
        self.messages.create_index([("from", ASCENDING), ("received_at", ASCENDING)], name="from")
        self.messages.create_index(
            [("keyword", ASCENDING), ("received_at", ASCENDING)], name="keyword"
        )

    def record(self, fields: Doc, now: datetime) -> bool:
        """Keep an inbound message; False when it was already kept and settled (a resent
        callback). One kept but never settled (the daemon stopped half way) is True again."""
        doc = {
            "_id": fields["inbound_id"],
            **{k: fields.get(k) for k in ("from", "to", "body", "timestamp")},
            "received_at": now,
        }
        try:
            self.messages.insert_one(doc)
        except DuplicateKeyError:
            kept = self.messages.find_one({"_id": doc["_id"]}, {"outcome": 1}) or {}
            return kept.get("outcome") is None
        return True

    def settle(self, inbound_id: str, keyword: str | None, outcome: str, replied: bool) -> None:
        self.messages.update_one(
            {"_id": inbound_id},
            {"$set": {"keyword": keyword, "outcome": outcome, "replied": replied}},
        )

    def texts_from(self, number: str, limit: int = 20) -> list[Doc]:
        """The newest texts `number` sent us, with what was done about each."""
        docs = self.messages.find({"from": number}).sort("received_at", DESCENDING).limit(limit)
        return list(docs)

    def replies_since(self, number: str, since: datetime) -> int:
        """How many of `number`'s texts were answered since then."""
        query = {"from": number, "replied": True, "received_at": {"$gte": since}}
        return len(list(self.messages.find(query, {"_id": 1}).limit(100)))

    def answered_since(self, number: str, keyword: str, since: datetime) -> bool:
        """Whether `number` got a reply to `keyword` since then (HELP is answered once a day)."""
        query = {"from": number, "keyword": keyword, "outcome": "replied",
                 "received_at": {"$gte": since}}  # fmt: skip
        return self.messages.find_one(query) is not None

    def opt_out_counts(self, start: datetime, end: datetime) -> tuple[Counter[str], Counter[str]]:
        """Per sender number, between the two times: opt-outs received and messages sent."""
        opt_outs: Counter[str] = Counter()
        query = {"keyword": "stop", "received_at": {"$gte": start, "$lt": end}}
        for doc in self.messages.find(query, {"to": 1, "outcome": 1}):
            if str(doc.get("outcome")).startswith(("opted_out", "already_opted_out")):
                opt_outs[str(doc.get("to"))] += 1
        sent: Counter[str] = Counter()
        sent_query = {"sent_at": {"$gte": start, "$lt": end}}
        for doc in self.outbox.find(sent_query, {"from": 1, "state": 1, "campaign": 1}):
            campaign = doc.get("campaign")
            if doc.get("state") in SENT_STATES and not str(campaign).startswith(DAEMON_TEXTS):
                sent[str(doc.get("from"))] += 1
        return opt_outs, sent
