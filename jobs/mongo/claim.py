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
from jobs.mongo.poison import caused_by_document, server_reason, set_aside

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
    """What a claim writes: `sending` under a fresh token, a lease, one more attempt."""
    return {
        "$set": {
            "state": State.SENDING.value,
            "claim_token": uuid.uuid4().hex,
            "lease_until": now + lease,
            "in_flight": False,
            "updated_at": now,
            "synced": False,
        },
        "$inc": {"attempts": 1, "rev": 1},
    }


def claim_one(outbox: Collection[Doc], now: datetime, lease: timedelta) -> Doc | None:
    """Claim the next due document under a fresh token; None when nothing is due."""
    return outbox.find_one_and_update(
        claim_filter(now),
        claim_update(now, lease),
        sort=claim_sort(),
        return_document=ReturnDocument.AFTER,
    )


def quarantine(
    outbox: Collection[Doc], status: Collection[Doc], now: datetime, lease: timedelta
) -> tuple[Doc | None, Doc | None]:
    """Claiming the next due document failed on something it holds (a counter overwritten
    with text or at its Int64 maximum, a size at the limit): it would block the queue for good.
    The first due document is claimed alone to make sure it is the one at fault (another daemon
    may have set the culprit aside meanwhile); if that fails too, it is rejected with the
    server's reason. Returns (claimed, rejected), either to be projected."""
    top = outbox.find_one(claim_filter(now), {"_id": 1}, sort=claim_sort())
    if top is None:
        return None, None
    try:
        claimed = outbox.find_one_and_update(
            {**claim_filter(now), "_id": top["_id"]},
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
