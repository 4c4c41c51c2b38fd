"""Recipients as the web app shows them: counts, one page of numbers, one person's history."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from jobs.mongo.connection import translating
from jobs.mongo.directory import USERS
from jobs.mongo.inbound import INBOUND
from jobs.mongo.projection import STATUS
from jobs.rules.identity import spellings

Doc = dict[str, Any]
MESSAGE_FIELDS = {
    "to": 1, "from": 1, "user": 1, "campaign": 1, "state": 1, "error": 1, "created_at": 1,
    "sent_at": 1, "delivered_at": 1, "segments": 1,
}  # fmt: skip


@translating
def counts(db: Database[Doc]) -> dict[str, int]:
    """Records that are verified (and not opted out), opted out, and neither."""
    users = db[USERS]
    opted_out = users.count_documents({"opted_out": {"$exists": True}})
    verified = users.count_documents({"verified": True, "opted_out": {"$exists": False}})
    total = users.count_documents({})
    return {
        "verified": verified,
        "opted_out": opted_out,
        "unverified": total - verified - opted_out,
    }


@translating
def audience(db: Database[Doc]) -> list[str]:
    """The numbers a broadcast to every verified recipient would text now (as stored)."""
    query = {"verified": True, "opted_out": {"$exists": False}}
    found = db[USERS].find(query, {"phone": 1}).sort("phone", ASCENDING)
    return [doc["phone"] for doc in found if isinstance(doc.get("phone"), str)]


@translating
def page(db: Database[Doc], limit: int = 200) -> list[Doc]:
    """The first `limit` records by number, with what they say about consent."""
    fields = {"_id": 0, "phone": 1, "verified": 1, "opted_out": 1, "consent.at": 1}
    return list(db[USERS].find({}, fields).sort("phone", ASCENDING).limit(limit))


@translating
def history(db: Database[Doc], number: str, limit: int = 100) -> dict[str, Any]:
    """Everything kept about one normalised number: its records (consent and opt-outs, with
    their evidence), the texts it sent us, and the messages sent to it with their states."""
    names = spellings(number)
    records = list(db[USERS].find({"phone": {"$in": names}}, {"_id": 0}))
    inbound = list(
        db[INBOUND]
        .find({"from": {"$in": names}}, {"_id": 0, "body": 1, "keyword": 1, "received_at": 1})
        .sort("received_at", DESCENDING)
        .limit(limit)
    )
    messages = list(
        db[STATUS]
        .find({"to": {"$in": names}}, MESSAGE_FIELDS)
        .sort("created_at", DESCENDING)
        .limit(limit)
    )
    return {"number": number, "records": records, "inbound": inbound, "messages": messages}
