"""Claiming: the find-and-modify that hands one due message to one worker, and the quarantine
of a document that makes it fail."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from jobs.model import State
from jobs.mongo import writes
from jobs.mongo.poison import caused_by_document, server_reason, set_aside
from jobs.rules import changes, replies

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")


def claim_filter(now: datetime) -> Doc:
    """Due messages. A lone equality on `state` first: servers that push down only equalities
    (FerretDB 1.x) then hand back queued messages alone, not every message ever sent."""
    return {"state": State.QUEUED.value, "due_at": {"$lte": now}}


def claim_sort() -> list[tuple[str, int]]:
    """Highest priority first, then the longest due; the `claim` index serves both."""
    return [("priority", DESCENDING), ("due_at", ASCENDING)]


def claim_update(now: datetime, lease: timedelta) -> Doc:
    """What a claim writes, as the transition table decides it: `sending` under a fresh token,
    a lease, one more attempt."""
    return writes.update(changes.claimed(now, lease, uuid.uuid4().hex))


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
    found = outbox.find(query, CANDIDATE_FIELDS).sort("due_at", ASCENDING).limit(limit)
    try:
        # Left to itself, DocumentDB's planner reads every queued message by the `claim` index.
        return list(found.clone().hint("_id_"))
    except OperationFailure as exc:
        if "hint" not in str(exc):
            raise
    return list(found)


def claim_by_id(
    outbox: Collection[Doc], doc_id: Any, now: datetime, lease: timedelta
) -> Doc | None:
    """Claim this candidate under a fresh token if it is still due and queued; None when another
    worker took it first."""
    return _claim(outbox, {"_id": {"$eq": doc_id}, **claim_filter(now)}, now, lease, sort=None)


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
        claim_update(now, lease),
        sort=sort,
        return_document=ReturnDocument.AFTER,
    )


def quarantine(
    outbox: Collection[Doc],
    status: Collection[Doc],
    now: datetime,
    lease: timedelta,
    doc_id: Any = None,
) -> tuple[Doc | None, Doc | None]:
    """Claiming a due document (the next one, or this one) failed on something it holds (a
    counter overwritten with text or at its Int64 maximum, a size at the limit): it would block
    the queue for good. It is claimed alone to make sure it is the one at fault (another daemon
    may have set the culprit aside meanwhile); if that fails too, it is rejected with the
    server's reason. Returns (claimed, rejected), either to be projected."""
    if doc_id is None:
        top = outbox.find_one(claim_filter(now), {"_id": 1}, sort=claim_sort())
    else:
        top = outbox.find_one({"_id": {"$eq": doc_id}, **claim_filter(now)}, {"_id": 1})
    if top is None:
        return None, None
    try:
        claimed = outbox.find_one_and_update(
            {**claim_filter(now), "_id": {"$eq": top["_id"]}},
            claim_update(now, lease),
            return_document=ReturnDocument.AFTER,
        )
        return claimed, None
    except OperationFailure as exc:
        if not caused_by_document(exc):
            raise
        detail = server_reason(exc)
    rejected = set_aside(outbox, status, top["_id"], {"state": State.QUEUED.value}, detail, now)
    if rejected is not None:
        log.warning("claim.quarantined", message_id=str(top["_id"]), detail=detail)
    return None, rejected
