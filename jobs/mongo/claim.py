"""Claiming: the find-and-modify that hands one due message to one worker, and the quarantine
of a document whose counters someone overwrote."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection

from jobs.model import Problem, Reason, State

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")

TYPE_MISMATCH = 14  # $inc on a field that is not a number


def claim_filter(now: datetime) -> Doc:
    """Due messages. A lone equality on `state` first: servers that push down only equalities
    (FerretDB 1.x) then hand back queued messages alone, not every message ever sent."""
    return {"state": State.QUEUED.value, "due_at": {"$lte": now}}


def claim_sort() -> list[tuple[str, int]]:
    """Highest priority first, then the longest due; the `claim` index serves both."""
    return [("priority", DESCENDING), ("due_at", ASCENDING)]


def claim_one(outbox: Collection[Doc], now: datetime, lease: timedelta) -> Doc | None:
    """Claim the next due document under a fresh token; None when nothing is due."""
    return outbox.find_one_and_update(
        claim_filter(now),
        {
            "$set": {
                "state": State.SENDING.value,
                "claim_token": uuid.uuid4().hex,
                "lease_until": now + lease,
                "in_flight": False,
                "updated_at": now,
                "synced": False,
            },
            "$inc": {"attempts": 1, "rev": 1},
        },
        sort=claim_sort(),
        return_document=ReturnDocument.AFTER,
    )


def quarantine(outbox: Collection[Doc], status: Collection[Doc], now: datetime) -> Doc | None:
    """The next due document has counters someone overwrote with something that is not a
    number, so claiming it fails: reject it, or it would block the queue for good. Returns the
    rejected document, to be projected."""
    bad = outbox.find_one(claim_filter(now), sort=claim_sort())
    if bad is None:
        return None
    copy = status.find_one({"_id": bad["_id"]}, {"rev": 1}) or {}
    last = copy.get("rev")
    rev = last if isinstance(last, int) else 0
    detail = "the daemon's counters in this document were overwritten"
    fields = {"state": State.REJECTED.value, "attempts": 0, "rev": rev + 1, "updated_at": now}
    fields["error"] = Problem(Reason.INVALID_DOCUMENT, detail).as_error()
    new = outbox.find_one_and_update(
        {"_id": bad["_id"], "state": State.QUEUED.value},
        {"$set": {**fields, "synced": False}},
        return_document=ReturnDocument.AFTER,
    )
    if new is not None:
        log.warning("claim.quarantined", message_id=str(bad["_id"]))
    return new
