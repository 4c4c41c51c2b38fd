"""An in-memory outbox with the contract of the MongoDB store (see jobs/ports/outbox.py), for
tests and experiments that need no database."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobs.clock import as_utc
from jobs.doubles.memory_documents import MemoryDocuments
from jobs.errors import StoreRefused
from jobs.model import State
from jobs.ports import Doc
from jobs.rules import changes, fairness, seal
from jobs.rules.intake import Admission, duplicate_key

log = structlog.get_logger("sms_outbox.memory")


INT64_MAX = 2**63 - 1


def _number(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _counter(value: object) -> bool:
    """A counter the server could increment: a number, and not at the Int64 limit."""
    return _number(value) and (value is None or value < INT64_MAX)  # type: ignore[operator]


def _due(doc: Mapping[str, Any], now: datetime) -> bool:
    due_at = doc.get("due_at")
    return isinstance(due_at, datetime) and as_utc(due_at) <= now


class MemoryOutbox(MemoryDocuments):
    """The outbox in memory (jobs/doubles/memory_documents.py): intake, the claim, setting
    aside, a broadcast's children; every write decided by the transition table, as on the
    server. A claim is atomic: it runs under the lock."""

    def admit_many(self, admitted: list[tuple[Doc, Admission]]) -> list[tuple[Any, StoreRefused]]:
        """One by one: memory refuses no document for its content."""
        for doc, admission in admitted:
            self.admit(doc["_id"], admission)
        return []

    def admit(self, doc_id: Any, admission: Admission) -> Doc | None:
        """Give a new document its first state; None if it was admitted already."""
        with self._lock:
            key = admission.fields.get("key")
            if key is not None and admission.problem is None:
                other = next(
                    (
                        d for d in self._docs.values()
                        if d.get("key") == key and d.get("user") == admission.fields["user"]
                        and d["_id"] != doc_id and d.get("state") is not None
                    ),
                    None,
                )  # fmt: skip
                if other is not None:
                    admission = duplicate_key(admission, other["_id"])
            return self._commit(doc_id, changes.admitted(admission, self.clock.now()))

    def claim(self, limit: int, lease: timedelta) -> list[Doc]:
        """Claim up to `limit` due documents in the order of jobs/rules/fairness.py: replies,
        then highest priority, users and campaigns taking turns at equal priority."""
        claimed: list[Doc] = []
        with self._lock:
            now = self.clock.now()
            due = [
                d for d in self._docs.values() if d.get("state") == State.QUEUED and _due(d, now)
            ]
            for doc in fairness.take_turns(due):
                if len(claimed) >= limit:
                    break
                if not (_counter(doc.get("attempts")) and _counter(doc.get("rev"))):
                    self._quarantine(doc["_id"])
                    continue
                change = changes.claimed(now, lease, uuid.uuid4().hex)
                done = self._commit(doc["_id"], change)
                if done is not None:
                    claimed.append(done)
        return claimed

    def set_aside(self, doc_id: Any, expected: Mapping[str, Any], detail: str) -> Doc | None:
        """Reject a document a step could not write, if it still matches `expected`."""
        with self._lock:
            last = self._status.get(doc_id, {}).get("rev")
            change = changes.set_aside(expected, last, detail, self.clock.now())
            done = self._commit(doc_id, change)
            if done is not None:
                log.warning("message.set_aside", message_id=str(doc_id), detail=detail)
            return done

    def _quarantine(self, doc_id: Any) -> None:
        detail = "the daemon's counters in this document were overwritten"
        if self.set_aside(doc_id, {"state": State.QUEUED.value}, detail) is not None:
            log.warning("claim.quarantined", message_id=str(doc_id))

    def add_children(self, children: Iterable[Doc]) -> list[Doc]:
        """Insert a broadcast's messages not already there; returns those inserted."""
        inserted: list[Doc] = []
        with self._lock:
            for child in children:
                there = self._docs.get(child["_id"])
                made = self._sealer is None or self._sealer.sealed(there or {}, seal.MADE)
                if there is not None and made:
                    continue
                self._docs[child["_id"]] = copy.deepcopy(child)
                self._project(self._docs[child["_id"]])
                inserted.append(child)
        return inserted

    def cancel_campaign(self, campaign: str, by: str) -> int:
        """Cancel every message of a broadcast still queued; those in flight finish."""
        change = changes.cancelled({"state": State.QUEUED.value}, by, self.clock.now())
        with self._lock:
            queued = [
                d["_id"] for d in self._docs.values()
                if d.get("campaign") == campaign and d.get("state") == State.QUEUED
            ]  # fmt: skip
            return sum(self._commit(doc_id, change) is not None for doc_id in queued)
