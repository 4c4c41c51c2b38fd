"""An in-memory outbox with the contract of the MongoDB store (see jobs/ports/outbox.py), for
tests and experiments that need no database."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobs.clock import Clock, as_utc
from jobs.doubles.ledgers import MemoryHolds, MemorySpentIds
from jobs.errors import DuplicateKey, StoreRefused
from jobs.model import CLAIM_FIELDS, STATUS_FIELDS, Problem, Reason, State, outcome_fields
from jobs.ports import (
    CLAIM_ENDED,
    TICKET_TAKEN,
    Doc,
    NoGuard,
    Outcome,
    Sealer,
    SendGuard,
    SendRefused,
    SendTicket,
)
from jobs.rules import fairness, interventions, replay, seal
from jobs.rules.intake import Admission

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


class MemoryOutbox:
    """The outbox and its status copies in two dictionaries behind one lock.

    Every method runs under the lock, so a claim is atomic and a write and its status copy
    happen together (nothing is ever left for `resync`). Documents go in and come out as
    copies, as they would through a database driver. Its send guard is `NoGuard`: a claim here
    is never held twice.
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

    def reintake(self, doc: Mapping[str, Any]) -> bool:
        """Make an unsealed document a new producer document again (fenced)."""
        with self._lock:
            current = self._docs.get(doc["_id"])
            if current is None or current.get("state") != doc.get("state"):
                return False
            if current.get("claim_token") != doc.get("claim_token"):
                return False
            for name in {"state", *replay.DAEMON_FIELDS} & current.keys():
                del current[name]
            return True

    def new_id(self) -> Any:
        """A fresh id for a producer's document."""
        return uuid.uuid4().hex

    def ensure_indexes(self) -> None:
        """Nothing to index."""

    # Producers

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

    # Intake

    def new_documents(self, limit: int) -> list[Doc]:
        """Documents no daemon has admitted yet."""
        with self._lock:
            fresh = [d for d in self._docs.values() if d.get("state") is None]
            return copy.deepcopy(fresh[:limit])

    def admit_many(self, admitted: list[tuple[Doc, Admission]]) -> list[tuple[Any, StoreRefused]]:
        """One by one: memory refuses no document for its content."""
        for doc, admission in admitted:
            self.admit(doc["_id"], admission)
        return []

    def admit(self, doc_id: Any, admission: Admission) -> Doc | None:
        """Give a new document its first state; None if it was admitted already."""
        with self._lock:
            doc = self._docs.get(doc_id)
            if doc is None or doc.get("state") is not None:
                return None
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
                    problem = Problem(
                        Reason.DUPLICATE_KEY, f"key {key!r} is message {other['_id']}"
                    )
                    admission = Admission(problem=problem, broadcast=admission.broadcast)
            for name in admission.strip:
                doc.pop(name, None)
            now = self.clock.now()
            doc.update(created_at=now, updated_at=now, rev=1)
            doc["kind"] = "broadcast" if admission.broadcast else "message"
            if admission.seal is not None:
                doc["seal"] = admission.seal
            if admission.problem is None:
                doc.update(admission.fields, state=State.QUEUED.value)
            else:
                doc.update(state=State.REJECTED.value, error=admission.problem.as_error())
            return self._project(doc)

    # Claim and fenced transitions

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
                    self._quarantine(doc, now)
                    continue
                doc.update(
                    state=State.SENDING.value, claim_token=uuid.uuid4().hex,
                    lease_until=now + lease, in_flight=False, updated_at=now,
                    attempts=(doc.get("attempts") or 0) + 1, rev=(doc.get("rev") or 0) + 1,
                )  # fmt: skip
                claimed.append(self._project(doc))
        return claimed

    def set_aside(self, doc_id: Any, expected: Mapping[str, Any], detail: str) -> Doc | None:
        """Reject a document a step could not write, if it still matches `expected`."""
        with self._lock:
            doc = self._docs.get(doc_id)
            if doc is None or any(doc.get(k) != v for k, v in expected.items()):
                return None
            last = self._status.get(doc_id, {}).get("rev")
            doc.update(state=State.REJECTED.value, updated_at=self.clock.now())
            doc.update(rev=(last if isinstance(last, int) else 0) + 1)
            doc["error"] = Problem(Reason.INVALID_DOCUMENT, detail).as_error()
            for name in ("claim_token", "lease_until", "in_flight", "due_at"):
                doc.pop(name, None)
            log.warning("message.set_aside", message_id=str(doc_id), detail=detail)
            return self._project(doc)

    def _quarantine(self, doc: Doc, now: datetime) -> None:
        last = self._status.get(doc["_id"], {}).get("rev")
        rev = last if isinstance(last, int) else 0
        detail = "the daemon's counters in this document were overwritten"
        doc.update(state=State.REJECTED.value, attempts=0, rev=rev + 1, updated_at=now)
        doc["error"] = Problem(Reason.INVALID_DOCUMENT, detail).as_error()
        log.warning("claim.quarantined", message_id=str(doc["_id"]))
        self._project(doc)

    def renew(
        self,
        doc: Mapping[str, Any],
        lease: timedelta,
        *,
        in_flight: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Extend the lease (fenced); `in_flight` marks that the request is about to leave.
        Neither is public: only `extra` fields that the status holds make a new revision."""
        fields = {"lease_until": self.clock.now() + lease, "in_flight": in_flight, **(extra or {})}
        public = any(name in STATUS_FIELDS for name in extra or {})
        return self._fenced(doc, lambda d: d.update(fields), public=public)

    def finish(
        self,
        doc: Mapping[str, Any],
        state: State,
        *,
        problem: Problem | None = None,
        provider_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Record a terminal outcome of a claimed document (fenced)."""
        fields, gone = outcome_fields(
            doc["claim_token"], state, self.clock.now(),
            problem=problem, provider_id=provider_id, extra=extra,
        )  # fmt: skip
        return self._fenced(doc, lambda d: self._apply(d, fields, gone))

    def retry_later(
        self, doc: Mapping[str, Any], due_at: datetime, problem: Problem, *, refund: bool = False
    ) -> Doc | None:
        """Queue a claimed document again until `due_at` (fenced); `refund` un-counts it."""
        fields = {"state": State.QUEUED.value, "due_at": due_at, "error": problem.as_error()}

        def change(d: Doc) -> None:
            self._apply(d, fields, ["claim_token", "lease_until"])
            if refund:
                d["attempts"] = d.get("attempts", 0) - 1

        return self._fenced(doc, change)

    def release(self, doc: Mapping[str, Any], *, keep_place: bool = False) -> Doc | None:
        """Hand back a claimed, unsent document: due now (or when it was due, with
        `keep_place`), its attempt refunded (fenced)."""
        due_at = doc.get("due_at") if keep_place else None
        fields = {"state": State.QUEUED.value, "due_at": due_at or self.clock.now()}

        def change(d: Doc) -> None:
            self._apply(d, fields, list(CLAIM_FIELDS))
            d["attempts"] = d.get("attempts", 0) - 1

        return self._fenced(doc, change)

    def record_late_success(self, doc: Mapping[str, Any], provider_id: str) -> Doc | None:
        """Upgrade to `sent` the `unknown` this claim's expired lease caused."""
        with self._lock:
            current = self._docs.get(doc["_id"])
            if current is None or current.get("state") != State.UNKNOWN:
                return None
            if current.get("last_claim_token") != doc["claim_token"]:
                return None
            now = self.clock.now()
            fields = {"state": State.SENT.value, "provider_id": provider_id, "sent_at": now}
            self._apply(current, fields, ["error"])
            return self._changed(current)

    # The send

    def begin_send(self, doc: Mapping[str, Any], lease: timedelta) -> SendTicket | SendRefused:
        """Open the request of this claim, all under the lock: marked in flight (fenced), the
        guard's token taken, the signed id spent; refused when the claim or the id is gone."""
        ticket = SendTicket.of(doc)
        with self._lock:
            if self.renew(doc, lease, in_flight=True, extra={"ticket": ticket.token}) is None:
                return SendRefused(lost=CLAIM_ENDED)
            token = self._guard.take(doc)
            if token is None:
                copy = str(doc["_id"]) if self._guard.taken_by_a_copy(doc) else None
                return SendRefused(lost=TICKET_TAKEN, replay_of=copy)
            if not self._spent.take(ticket.spent_id, doc["_id"], ticket.claim):
                self._guard.settle(token, Outcome.NOT_SENT)
                return SendRefused(replay_of=ticket.spent_id)
            return ticket

    def finish_send(
        self, ticket: SendTicket, outcome: Outcome, provider_id: str | None = None
    ) -> None:
        """Close a send: a 202 keeps its id spent for good, a request that may have left keeps
        it spent, one that certainly did not frees it for the next claim."""
        with self._lock:
            if outcome is Outcome.SENT and provider_id is not None:
                self._spent.sent(ticket.spent_id, ticket.claim, provider_id)
            self._guard.settle(ticket.token, outcome, provider_id)
            if outcome is Outcome.NOT_SENT:
                self._spent.settle(ticket.spent_id, ticket.claim, outcome)

    # Recovery and fan-out

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

    def cancel_campaign(self, campaign: str, by: str) -> int:
        """Cancel every message of a broadcast still queued; those in flight finish."""
        fields = interventions.cancelled(by, self.clock.now())
        with self._lock:
            queued = [
                d for d in self._docs.values()
                if d.get("campaign") == campaign and d.get("state") == State.QUEUED
            ]  # fmt: skip
            for doc in queued:
                doc.update(copy.deepcopy(fields))
                self._changed(doc)
        return len(queued)

    def resync(self, limit: int) -> int:
        """Nothing to finish: every write here copies its status under the same lock."""
        return 0

    def mark_synced(self) -> int:
        """Nothing to mark: every copy here is marked synced as it is written."""
        return 0

    # Internals

    def _fenced(
        self, doc: Mapping[str, Any], change: Callable[[Doc], None], *, public: bool = True
    ) -> Doc | None:
        with self._lock:
            current = self._docs.get(doc["_id"])
            if current is None or current.get("state") != State.SENDING:
                return None
            if current.get("claim_token") != doc["claim_token"]:
                return None
            change(current)
            return self._changed(current) if public else copy.deepcopy(current)

    @staticmethod
    def _apply(doc: Doc, fields: Mapping[str, Any], gone: Iterable[str]) -> None:
        doc.update(fields)
        for name in gone:
            doc.pop(name, None)

    def _changed(self, doc: Doc) -> Doc:
        doc["updated_at"] = self.clock.now()
        doc["rev"] = doc.get("rev", 0) + 1
        return self._project(doc)

    def _project(self, doc: Doc) -> Doc:
        """Copy the public fields to the status unless a newer revision is there; mark synced."""
        last = self._status.get(doc["_id"], {}).get("rev")
        # No public copy of what the daemon did not seal.
        if self.trusts(doc) and (not isinstance(last, int) or last <= doc["rev"]):
            status = {k: copy.deepcopy(doc[k]) for k in STATUS_FIELDS if k in doc}
            self._status[doc["_id"]] = {"_id": doc["_id"], **status}
        doc["synced"] = True
        return copy.deepcopy(doc)
