"""The status projection: `message_status`, one public copy of each outbox document."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from jobs.clock import Clock

Doc = dict[str, Any]

OUTBOX = "outbox"
STATUS = "message_status"
# A live writer copies its change within milliseconds; older unsynced changes lost their writer.
SYNC_GRACE = timedelta(seconds=10)
STATUS_FIELDS = (
    "state", "kind", "to", "from", "user", "campaign", "key", "attempts", "provider_id",
    "error", "recipients", "segments", "encoding", "created_at", "updated_at", "sent_at", "rev",
    "delivered_at", "final_at", "receipts", "reconciliation", "reply_to",
)  # fmt: skip


class StatusProjection:
    """Copies outbox documents to `message_status`.

    Every outbox change bumps `rev` and sets `synced: false`; the copy is guarded on `rev`, so
    a late copy never overwrites a newer revision, and then marks the outbox document synced. A
    worker that dies between the two writes leaves it unsynced, and `resync` finishes the job.
    """

    def __init__(self, outbox: Collection[Doc], status: Collection[Doc], clock: Clock) -> None:
        self.outbox = outbox
        self.status = status
        self.clock = clock

    def project(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Copy each document's public fields unless a newer revision is already there."""
        for doc in docs:
            update: Doc = {"$set": {k: doc[k] for k in STATUS_FIELDS if k in doc}}
            # A field the outbox dropped (the error a late success clears) must go here too.
            gone = {k: "" for k in STATUS_FIELDS if k not in doc}
            if gone:
                update["$unset"] = gone
            # A duplicate key means the status already holds a newer revision. An equal one is
            # overwritten: normally it is the same copy, but where a server lets a stale write
            # land (see jobs/tickets.py) two states can share a revision, and the later wins.
            with contextlib.suppress(DuplicateKeyError):
                self.status.update_one(
                    {"_id": doc["_id"], "rev": {"$lte": doc["rev"]}}, update, upsert=True
                )
            self.outbox.update_one(
                {"_id": doc["_id"], "rev": doc["rev"]}, {"$set": {"synced": True}}
            )

    def resync(self, limit: int) -> int:
        """Copy the changes whose copy a crashed worker never wrote."""
        before = self.clock.now() - SYNC_GRACE
        query = {"synced": False, "updated_at": {"$lt": before}}
        docs = list(self.outbox.find(query).limit(limit))
        self.project(docs)
        return len(docs)
