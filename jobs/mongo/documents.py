"""The outbox's two collections on MongoDB: the documents and their status copies, read, copied
and changed one fenced write at a time; what every part of the outbox store stands on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

from jobs.clock import Clock
from jobs.model import State
from jobs.mongo import guard, writes
from jobs.mongo.account import AccountHold
from jobs.mongo.guard import GuardSetting
from jobs.mongo.projection import OUTBOX, STATUS, StatusProjection
from jobs.mongo.queue import ClaimQueue
from jobs.mongo.spent import SpentIds
from jobs.ports import Sealer, SendGuard
from jobs.ports.writes import OutboxWrites
from jobs.rules.transitions import Change

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")


class OutboxDocuments(OutboxWrites):
    """Reads and writes `outbox` and its projection `message_status`.

    The outbox document is the truth; every public change (one to a field `message_status`
    holds) bumps its `rev` and is copied to `message_status` by a write guarded on `rev`, so a
    late copy never overwrites a newer one. Private bookkeeping (the lease, the in-flight mark)
    changes neither. Changes made after a claim are fenced on the claim token: a worker whose
    lease expired cannot overwrite what another worker recorded.
    """

    def __init__(
        self,
        db: Database[Doc],
        clock: Clock,
        send_guard: GuardSetting = "tickets",
        sealer: Sealer | None = None,
    ):
        self.db = db
        self.clock = clock
        self.outbox: Collection[Doc] = db[OUTBOX]
        self.status: Collection[Doc] = db[STATUS]
        self._sealer = sealer
        self.projection = StatusProjection(self.outbox, self.status, clock, self.trusts)
        self.queue = ClaimQueue(db, clock)
        self.send_guard = send_guard
        self._guard: SendGuard | None = None
        self._spent = SpentIds(db, clock)
        self._holds = AccountHold(db, clock)

    @property
    def guard(self) -> SendGuard:
        """The send guard (see jobs/mongo/guard.py), chosen on first use; `auto` asks the server."""
        if self._guard is None:
            self._guard = guard.build(self.db, self.clock, self.send_guard)
        return self._guard

    @property
    def spent(self) -> SpentIds:
        """The record of signed ids already spent (see jobs/mongo/spent.py)."""
        return self._spent

    @property
    def sealer(self) -> Sealer | None:
        """What seals the daemon's documents (see jobs/rules/seal.py); None: signatures off."""
        return self._sealer

    def trusts(self, doc: Mapping[str, Any]) -> bool:
        """Whether the daemon may act on `doc`: it carries the daemon's seal (or nothing is
        sealed, with signatures off)."""
        return self._sealer is None or self._sealer.sealed(doc)

    @property
    def holds(self) -> AccountHold:
        """The account hold shared by every daemon on this database (jobs/mongo/account.py)."""
        return self._holds

    def new_id(self) -> Any:
        """A fresh id for a producer's document, made before it is signed."""
        return ObjectId()

    def ensure_indexes(self) -> None:
        """Create the indexes the daemon's queries rely on; safe to run again."""
        self.outbox.create_index(
            [("state", ASCENDING), ("priority", DESCENDING), ("due_at", ASCENDING)], name="claim"
        )
        self.outbox.create_index([("state", ASCENDING), ("lease_until", ASCENDING)], name="lease")
        self.outbox.create_index([("synced", ASCENDING), ("updated_at", ASCENDING)], name="sync")
        self._key_index()
        self.status.create_index([("campaign", ASCENDING), ("state", ASCENDING)], name="campaign")
        self.guard.ensure_indexes()

    def _key_index(self) -> None:
        """Idempotency keys are unique per user, so nobody can take another user's key: a
        partial index on (user, key). A server without partial indexes (FerretDB 1.x) gets the
        older index, unique across users. Keys duplicated before the index existed keep it from
        being built; intake still rejects the later duplicates, so the daemon runs on and says so.
        """
        try:
            self.outbox.create_index(
                [("user", ASCENDING), ("key", ASCENDING)], name="user_key", unique=True,
                partialFilterExpression={"key": {"$exists": True}},
            )  # fmt: skip
        except DuplicateKeyError:
            log.warning("index.key_duplicates", collection=OUTBOX)
        except OperationFailure as exc:
            log.warning("index.partial_unsupported", collection=OUTBOX, error=str(exc))
            with contextlib.suppress(DuplicateKeyError):
                self.outbox.create_index("key", name="key", unique=True, sparse=True)
            return
        if "key" in self.outbox.index_information():
            # The index of earlier versions, global across users.
            try:
                self.outbox.drop_index("key")
            except OperationFailure as exc:
                log.warning("index.not_dropped", index="key", error=str(exc))

    def _commit(self, doc_id: Any, change: Change | None) -> Doc | None:
        """Write `change` with one find-and-modify fenced on what the table names; a public
        change is copied to `message_status`."""
        if change is None:
            return None
        new = self.outbox.find_one_and_update(
            writes.fence(doc_id, change),
            writes.update(change),
            return_document=ReturnDocument.AFTER,
        )
        if new is not None and change.public:
            self.project(new)
        return new

    def expired_leases(self, limit: int) -> list[Doc]:
        """Claimed documents whose worker stopped renewing its lease."""
        now = self.clock.now()
        query = {"state": State.SENDING.value, "lease_until": {"$lte": now}}
        return list(self.outbox.find(query).limit(limit))

    def project(self, doc: Mapping[str, Any]) -> None:
        """Copy `doc`, just written, to `message_status` (see StatusProjection); a queued one
        also gets its place in the claim queue (jobs/mongo/queue.py)."""
        self.project_many([doc])

    def project_many(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Copy several documents just written to `message_status`, and queue the queued."""
        written = list(docs)
        self.projection.project(written)
        self.queue.offer(written)

    def project_new(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Copy documents just inserted to `message_status`, in bulk inserts, and queue the
        queued."""
        written = list(docs)
        self.projection.project_new(written)
        self.queue.offer(written)

    def mark_synced(self) -> int:
        """Mark synced the copies written since the last call, in one command (see
        StatusProjection); returns how many documents it marked."""
        return self.projection.mark_synced()

    def resync(self, limit: int) -> int:
        """Finish the status copies that crashed workers left unwritten."""
        return self.projection.resync(limit)

    def find(self, doc_id: Any) -> Doc | None:
        """The outbox document with this id."""
        return self.outbox.find_one({"_id": doc_id})

    def projected(self, doc_id: Any) -> Doc | None:
        """The public status copy of the document with this id."""
        return self.status.find_one({"_id": doc_id})

    def insert(self, doc: Doc) -> Any:
        """Insert a producer's document; raises DuplicateKey when its key is taken."""
        return self.outbox.insert_one(doc).inserted_id

    def find_by_key(self, key: str, user: str) -> Doc | None:
        """The outbox document that holds this user's idempotency key."""
        return self.outbox.find_one({"user": user, "key": key})
