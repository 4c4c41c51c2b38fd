"""The status projection: `message_status`, one public copy of each outbox document."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import structlog
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from jobs.clock import Clock
from jobs.model import STATUS_FIELDS
from jobs.mongo.connection import adapter
from jobs.mongo.poison import caused_by_document, minimal_copy, refused_for_itself

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")

OUTBOX = "outbox"
STATUS = "message_status"
# A live writer marks its copies synced within one cycle; older unsynced changes lost their writer.
SYNC_GRACE = timedelta(seconds=10)
# DocumentDB refuses more operations than this in one write batch, whatever it advertises.
BULK_LIMIT = 25_000
DUPLICATE_KEY = 11000


def is_public(fields: Iterable[str]) -> bool:
    """Whether a change to these outbox fields changes what a reader of the status sees."""
    return any(name in STATUS_FIELDS for name in fields)


@adapter
class StatusProjection:
    """Copies outbox documents to `message_status`.

    Every public change of an outbox document bumps its `rev` and sets `synced: false`; the copy
    is guarded on `rev`, so a late copy never overwrites a newer revision. Marking the outbox
    documents synced is bookkeeping, batched: `mark_synced` marks every copy written since its
    last call in one command (an `update_many` over their ids and revisions). A worker that
    dies before that leaves them unsynced, and any daemon's `resync` writes their copies again
    (the same copy twice is harmless).
    """

    def __init__(
        self,
        outbox: Collection[Doc],
        status: Collection[Doc],
        clock: Clock,
        trusts: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self.outbox = outbox
        self.status = status
        self.clock = clock
        # Only documents the daemon sealed get a public copy: one inserted with a state of its
        # own would otherwise show (and count in its campaign) whatever its writer chose.
        self.trusts = trusts or (lambda doc: True)
        self._copied: list[Doc] = []  # `_id` and `rev` of each copy not yet marked synced
        self._lock = threading.Lock()

    def project(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Copy each document's public fields unless a newer revision is already there."""
        docs = [doc for doc in docs if self.trusts(doc)]
        if len(docs) > 1:
            self._project_bulk(docs)
            return
        for doc in docs:
            # A duplicate key means the status already holds a newer revision. An equal one is
            # overwritten: normally it is the same copy, but where a server lets a stale write
            # land (see jobs/mongo/tickets.py) two states can share a revision, and the later wins.
            self._copy_one(doc)
            with self._lock:
                self._copied.append({"_id": doc["_id"], "rev": doc["rev"]})

    def project_new(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """The first copies of documents just inserted (a fan-out's messages): inserted in bulk,
        which the server does several times faster than guarded upserts. A copy that is there
        already (a resumed fan-out's, or one the server refuses) is written the usual way."""
        docs = [doc for doc in docs if self.trusts(doc)]
        for start in range(0, len(docs), BULK_LIMIT):
            chunk = docs[start : start + BULK_LIMIT]
            copies = [{"_id": d["_id"], **_copy(d)["$set"]} for d in chunk]
            try:
                self.status.insert_many(copies, ordered=False)
            except BulkWriteError as exc:
                failed = {err["index"] for err in exc.details.get("writeErrors", [])}
                self._project_bulk([chunk[i] for i in sorted(failed)])  # marks them copied
                chunk = [doc for i, doc in enumerate(chunk) if i not in failed]
            with self._lock:
                self._copied.extend({"_id": d["_id"], "rev": d["rev"]} for d in chunk)

    def project_refused(self, doc: Mapping[str, Any]) -> None:
        """The copy of a document the daemon rejected before sealing it (the server refused it
        at intake): the state, reason and revision the daemon wrote and the user it names, so
        its producer sees why; nothing else its writer chose."""
        update = minimal_copy(doc)
        user = doc.get("user")
        if isinstance(user, str) and len(user) <= 200:
            update["$set"]["user"] = user
            update["$unset"].pop("user", None)
        guard = {"_id": doc["_id"], "rev": {"$lte": doc["rev"]}}
        with contextlib.suppress(DuplicateKeyError):
            self.status.update_one(guard, update, upsert=True)
        with self._lock:
            self._copied.append({"_id": doc["_id"], "rev": doc["rev"]})

    def _copy_one(self, doc: Mapping[str, Any]) -> None:
        guard = {"_id": doc["_id"], "rev": {"$lte": doc["rev"]}}
        try:
            with contextlib.suppress(DuplicateKeyError):
                self.status.update_one(guard, _copy(doc), upsert=True)
        except OperationFailure as exc:
            # A copy the server cannot take (a field too large or too deep) must not fail every
            # resync: the status keeps the state, the reason and the revision.
            if not caused_by_document(exc):
                raise
            log.warning("status.minimal_copy", message_id=str(doc["_id"]), code=exc.code)
            with contextlib.suppress(DuplicateKeyError):
                self.status.update_one(guard, minimal_copy(doc), upsert=True)

    def _project_bulk(self, docs: list[Mapping[str, Any]]) -> None:
        """The same copies in unordered bulk writes: one command per chunk, not per document."""
        for start in range(0, len(docs), BULK_LIMIT):
            chunk = docs[start : start + BULK_LIMIT]
            ops = [
                UpdateOne({"_id": d["_id"], "rev": {"$lte": d["rev"]}}, _copy(d), upsert=True)
                for d in chunk
            ]
            try:
                self.status.bulk_write(ops, ordered=False)
            except BulkWriteError as exc:
                # As for one copy: a duplicate key means a newer revision is there already.
                errors = exc.details.get("writeErrors", [])
                refused = [err for err in errors if err.get("code") != DUPLICATE_KEY]
                if any(not refused_for_itself(err) for err in refused):
                    raise
                for err in refused:
                    self._copy_one(chunk[err["index"]])  # a minimal copy, as for one copy
            with self._lock:
                self._copied.extend({"_id": d["_id"], "rev": d["rev"]} for d in chunk)

    def mark_synced(self) -> int:
        """Mark synced, in one command, the outbox revisions copied since the last call."""
        with self._lock:
            copied, self._copied = self._copied, []
        if not copied:
            return 0
        # Only the revision copied: a document changed since waits for its own copy. The ids
        # are grouped by revision (a few groups), so the server looks each up in the `_id`
        # index: an `$or` of one clause per document costs it far more.
        by_rev: dict[Any, list[Any]] = {}
        for entry in copied:
            by_rev.setdefault(entry["rev"], []).append(entry["_id"])
        query = [{"rev": rev, "_id": {"$in": ids}} for rev, ids in by_rev.items()]
        try:
            result = self.outbox.update_many(
                {"synced": False, "$or": query}, {"$set": {"synced": True}}
            )
        except PyMongoError:
            with self._lock:  # tried again by the next call; resync covers a worker that dies
                self._copied[:0] = copied
            raise
        return result.modified_count

    def resync(self, limit: int) -> int:
        """Copy the changes whose copy a crashed worker never wrote, or never marked synced."""
        before = self.clock.now() - SYNC_GRACE
        query = {"synced": False, "updated_at": {"$lt": before}}
        docs = list(self.outbox.find(query).limit(limit))
        untrusted = [doc["_id"] for doc in docs if not self.trusts(doc)]
        if untrusted:
            # Never copied; marked so they do not fill every later resync's batch.
            self.outbox.update_many({"_id": {"$in": untrusted}}, {"$set": {"synced": True}})
        if len(untrusted) < len(docs):
            self.project(docs)
            self.mark_synced()
        return len(docs)


def _copy(doc: Mapping[str, Any]) -> Doc:
    update: Doc = {"$set": {k: doc[k] for k in STATUS_FIELDS if k in doc}}
    # A field the outbox dropped (the error a late success clears) must go here too.
    gone = {k: "" for k in STATUS_FIELDS if k not in doc}
    if gone:
        update["$unset"] = gone
    return update
