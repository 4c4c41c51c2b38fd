"""The in-memory outbox's documents and status copies: two dictionaries behind one lock, read
and changed one fenced write at a time, as the MongoDB store's collections are."""

from __future__ import annotations

import contextlib
import copy
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobs.clock import Clock, as_utc
from jobs.doubles.ledgers import MemoryHolds, MemorySpentIds
from jobs.errors import DuplicateKey
from jobs.model import STATUS_FIELDS, State
from jobs.ports import Doc, NoGuard, Sealer, SendGuard
from jobs.ports.writes import OutboxWrites
from jobs.rules import transitions
from jobs.rules.transitions import Change


class MemoryDocuments(OutboxWrites):
    """The outbox and its status copies in two dictionaries behind one lock.

    Every method runs under the lock, so a write and its status copy happen together (nothing
    is ever left for `resync`). Documents go in and come out as copies, as they would through
    a database driver. Its send guard is `NoGuard`: a claim here is never held twice.
    """

    def __init__(
        self, clock: Clock, guard: SendGuard | None = None, sealer: Sealer | None = None
    ) -> None:
        self.clock = clock
        self._guard = guard or NoGuard()
        self._sealer = sealer
        self._spent = MemorySpentIds()
        self._holds = MemoryHolds(clock)
        self._docs: dict[Any, Doc] = {}
        self._status: dict[Any, Doc] = {}
        self._lock = threading.RLock()

    @property
    def guard(self) -> SendGuard:
        """The guard of an atomic store (NoGuard unless another was given)."""
        return self._guard

    @property
    def spent(self) -> MemorySpentIds:
        """The record of spent signed ids."""
        return self._spent

    @property
    def holds(self) -> MemoryHolds:
        """The account hold of the daemons sharing this outbox."""
        return self._holds

    @property
    def sealer(self) -> Sealer | None:
        """What seals the daemon's documents; None: nothing is sealed."""
        return self._sealer

    def trusts(self, doc: Mapping[str, Any]) -> bool:
        """Whether `doc` carries the daemon's seal (always, without a sealer)."""
        return self._sealer is None or self._sealer.sealed(doc)

    def new_id(self) -> Any:
        """A fresh id for a producer's document."""
        return uuid.uuid4().hex

    def ensure_indexes(self) -> None:
        """Nothing to index."""

    def insert(self, doc: Doc) -> Any:
        """Insert a producer's document; raises DuplicateKey when its id or key is taken."""
        with self._lock:
            new = copy.deepcopy(doc)
            new.setdefault("_id", uuid.uuid4().hex)
            if new["_id"] in self._docs:
                raise DuplicateKey(f"_id {new['_id']!r} is taken")
            if "key" in new and self.find_by_key(new["key"], new.get("user")) is not None:
                raise DuplicateKey(f"key {new['key']!r} is taken")
            self._docs[new["_id"]] = new
            return new["_id"]

    def find(self, doc_id: Any) -> Doc | None:
        """The outbox document with this id."""
        with self._lock:
            found = self._docs.get(doc_id)
            return copy.deepcopy(found) if found is not None else None

    def find_by_key(self, key: str, user: Any) -> Doc | None:
        """The outbox document that holds this user's idempotency key."""
        with self._lock:
            found = next(
                (d for d in self._docs.values()
                 if "key" in d and d["key"] == key and d.get("user") == user),
                None,
            )  # fmt: skip
            return copy.deepcopy(found) if found is not None else None

    def projected(self, doc_id: Any) -> Doc | None:
        """The public status copy of the document with this id."""
        with self._lock:
            found = self._status.get(doc_id)
            return copy.deepcopy(found) if found is not None else None

    def new_documents(self, limit: int) -> list[Doc]:
        """Documents no daemon has admitted yet."""
        with self._lock:
            fresh = [d for d in self._docs.values() if d.get("state") is None]
            return copy.deepcopy(fresh[:limit])

    def expired_leases(self, limit: int) -> list[Doc]:
        """Claimed documents whose lease ran out."""
        with self._lock:
            now = self.clock.now()
            expired = [
                d for d in self._docs.values()
                if d.get("state") == State.SENDING
                and isinstance(d.get("lease_until"), datetime)
                and as_utc(d["lease_until"]) <= now
            ]  # fmt: skip
            return copy.deepcopy(expired[:limit])

    def fanning_out(self) -> bool:
        """Whether a broadcast request is held by a daemon that is fanning it out."""
        with self._lock:
            return any(
                d.get("state") == State.SENDING and d.get("kind") == "broadcast"
                for d in self._docs.values()
            )

    def count_children(self, campaign: str) -> int:
        """How many messages a broadcast has fanned out to."""
        with self._lock:
            return sum(
                1 for d in self._docs.values()
                if d.get("campaign") == campaign and d.get("kind") == "message"
            )  # fmt: skip

    def resync(self, limit: int) -> int:
        """Nothing to finish: every write here copies its status under the same lock."""
        return 0

    def mark_synced(self) -> int:
        """Nothing to mark: every copy here is marked synced as it is written."""
        return 0

    def _commit(self, doc_id: Any, change: Change | None) -> Doc | None:
        """Apply `change` to the document under the lock, if the table allowed it and the
        document still holds its fence; a public change is copied to the status."""
        with self._lock:
            current = self._docs.get(doc_id)
            if change is None or current is None or not transitions.holds(current, change):
                return None
            transitions.apply(current, change)
            return self._project(current) if change.public else copy.deepcopy(current)

    def _atomic(self) -> contextlib.AbstractContextManager[Any]:
        """One send's opening or closing happens under the lock."""
        return self._lock

    def _project(self, doc: Doc) -> Doc:
        """Copy the public fields to the status unless a newer revision is there; mark synced."""
        last = self._status.get(doc["_id"], {}).get("rev")
        # No public copy of what the daemon did not seal.
        if self.trusts(doc) and (not isinstance(last, int) or last <= doc["rev"]):
            status = {k: copy.deepcopy(doc[k]) for k in STATUS_FIELDS if k in doc}
            self._status[doc["_id"]] = {"_id": doc["_id"], **status}
        doc["synced"] = True
        return copy.deepcopy(doc)
