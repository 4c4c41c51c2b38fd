"""Claiming: the find-and-modify that hands one due message to one worker, and the quarantine
of a document whose counters someone overwrote."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection

from jobs.model import Problem, Reason, State
from jobs.rules import replies

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


# What a claim reads of each candidate: enough to order it, nothing more.
CANDIDATE_FIELDS = {"_id": 1, "priority": 1, "due_at": 1, "user": 1, "campaign": 1}


def candidates(outbox: Collection[Doc], now: datetime, limit: int) -> list[Doc]:
    """The first `limit` due documents in priority then due order, as small projections."""
    found = outbox.find(claim_filter(now), CANDIDATE_FIELDS).sort(claim_sort()).limit(limit)
    return list(found)


def reply_lane(outbox: Collection[Doc], now: datetime, limit: int) -> list[Doc]:
    """Due replies of the daemon's own, whatever priority producers use. Their ids begin with
    `reply:`, so the `_id` index finds them without reading the rest of the queue."""
    prefix = replies.PREFIX
    query = {**claim_filter(now), "_id": {"$gte": prefix, "$lt": prefix[:-1] + ";"}}
    return list(outbox.find(query, CANDIDATE_FIELDS).sort("due_at", ASCENDING).limit(limit))


def other_shares(
    outbox: Collection[Doc], now: datetime, shares: Iterable[tuple[str, str]], limit: int
) -> list[Doc]:
    """Due documents of every user and campaign but these: the turns of the others when one
    share fills all the candidates."""
    skip = [{"user": user, "campaign": campaign or None} for user, campaign in shares]
    query = {**claim_filter(now), "$nor": skip}
    return list(outbox.find(query, CANDIDATE_FIELDS).sort(claim_sort()).limit(limit))


def claim_by_id(
    outbox: Collection[Doc], doc_id: Any, now: datetime, lease: timedelta
) -> Doc | None:
    """Claim this candidate under a fresh token if it is still due and queued; None when another
    worker took it first."""
    return _claim(outbox, {"_id": doc_id, **claim_filter(now)}, now, lease, sort=None)


def claim_one(outbox: Collection[Doc], now: datetime, lease: timedelta) -> Doc | None:
    """Claim the next due document under a fresh token; None when nothing is due."""
    return _claim(outbox, claim_filter(now), now, lease, sort=claim_sort())


def _claim(
    outbox: Collection[Doc],
    query: Doc,
    now: datetime,
    lease: timedelta,
    sort: list[tuple[str, int]] | None,
) -> Doc | None:
    return outbox.find_one_and_update(
        query,
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
        sort=sort,
        return_document=ReturnDocument.AFTER,
    )


def quarantine(
    outbox: Collection[Doc], status: Collection[Doc], now: datetime, doc_id: Any = None
) -> Doc | None:
    """The next due document (or this one) has counters someone overwrote with something that
    is not a number, so claiming it fails: reject it, or it would block the queue for good.
    Returns the rejected document, to be projected."""
    if doc_id is None:
        bad = outbox.find_one(claim_filter(now), sort=claim_sort())
    else:
        bad = outbox.find_one({"_id": doc_id, **claim_filter(now)})
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
