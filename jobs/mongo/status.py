"""Status queries: what any client can ask of `message_status`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.database import Database

from jobs.mongo import account as account_hold
from jobs.mongo.connection import translating
from jobs.mongo.store import OUTBOX, STATUS, Doc
from jobs.rules import progress


def parse_id(text: str) -> Any:
    """Outbox ids are ObjectIds, except broadcast messages' `<campaign>:<number>` strings."""
    try:
        return ObjectId(text)
    except (InvalidId, TypeError):
        return text


@translating
def get(db: Database[Doc], message_id: str) -> Doc | None:
    """The status document of one message (or broadcast request)."""
    return db[STATUS].find_one({"_id": parse_id(message_id)}, {"rev": 0})


@translating
def lease_until(db: Database[Doc], message_id: str) -> datetime | None:
    """When the claim on a message being sent runs out (its daemon renews it while alive)."""
    doc = db[OUTBOX].find_one({"_id": parse_id(message_id)}, {"lease_until": 1})
    value = (doc or {}).get("lease_until")
    return value if isinstance(value, datetime) else None


@translating
def campaign(db: Database[Doc], campaign_id: str) -> dict[str, Any]:
    """A campaign's messages counted by state and by reason code."""
    states: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    projection = {"state": 1, "error.code": 1, "error.provider_code": 1}
    for doc in db[STATUS].find({"campaign": campaign_id}, projection):
        state = str(doc.get("state"))
        states[state] += 1
        error = doc.get("error")
        if state not in ("sent", "delivered") and isinstance(error, dict) and error.get("code"):
            reasons[reason_key(error)] += 1
    request = db[STATUS].find_one({"_id": parse_id(campaign_id)}, {"rev": 0})
    return {
        "campaign": campaign_id,
        "request": request,
        "total": sum(states.values()),
        "states": dict(sorted(states.items())),
        "reasons": dict(sorted(reasons.items())),
        "delivery": delivery(states),
        "account": account(db),
    }


def reason_key(error: dict[str, Any]) -> str:
    """A reason code, with Flowroute's code beside it when it answered (`provider:401`)."""
    code, provider_code = str(error["code"]), error.get("provider_code")
    return f"{code}:{provider_code}" if provider_code is not None else code


def account(db: Database[Doc]) -> dict[str, Any]:
    """Whether Flowroute is refusing the account, and since when (see jobs.mongo.account)."""
    held = account_hold.read(db)
    return held.as_dict() if held is not None else {"held": False}


def delivery(states: Mapping[str, int]) -> dict[str, Any]:
    """Receipts so far: `awaiting` have none yet; the rate is delivered among messages with a
    final receipt (the same rate the dashboard and `--watch` show)."""
    counts = {name: states.get(name, 0) for name in ("delivered", "undelivered", "expired")}
    counts["awaiting"] = states.get("sent", 0)
    return {**counts, "rate": progress.delivery_rate(states)}
