"""The outbox store: every write of a message's state, fenced on its claim token, and its status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure

from jobs.clock import Clock
from jobs.dispatch.ports import SendGuard
from jobs.errors import StoreUnavailable
from jobs.model import Problem, Reason, State, outcome_fields
from jobs.mongo import guard
from jobs.mongo.account import AccountHold
from jobs.mongo.claim import (
    TYPE_MISMATCH,
    candidates,
    claim_by_id,
    other_shares,
    quarantine,
    reply_lane,
)
from jobs.mongo.connection import adapter
from jobs.mongo.guard import GuardSetting
from jobs.mongo.projection import OUTBOX, STATUS, StatusProjection, is_public
from jobs.mongo.spent import SpentIds
from jobs.rules import fairness, interventions, signing
from jobs.rules.intake import Admission

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")

CANCEL_TRIES = 10
# A claim reads this many candidates per message wanted, so some may be lost to other daemons.
CANDIDATES_PER_CLAIM = 2
# Reads of candidates in one claim when other daemons took all of them first.
CLAIM_ROUNDS = 3


@adapter
class OutboxStore:
    """Reads and writes `outbox` and its projection `message_status`.

    The outbox document is the truth; every public change (one to a field `message_status`
    holds) bumps its `rev` and is copied to `message_status` by a write guarded on `rev`, so a
    late copy never overwrites a newer one. Private bookkeeping (the lease, the in-flight mark)
    changes neither. Changes made after a claim are fenced on the claim token: a worker whose
    lease expired cannot overwrite what another worker recorded.
    """

    def __init__(self, db: Database[Doc], clock: Clock, send_guard: GuardSetting = "tickets"):
        self.db = db
        self.clock = clock
        self.outbox: Collection[Doc] = db[OUTBOX]
        self.status: Collection[Doc] = db[STATUS]
        self.projection = StatusProjection(self.outbox, self.status, clock)
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
        # Sparse rather than partial: MongoDB-compatible servers without partial indexes have it.
        # Keys duplicated before the index existed keep it from being built; intake still
        # rejects the later duplicates, so the daemon runs on and says so.
        try:
            self.outbox.create_index("key", name="key", unique=True, sparse=True)
        except DuplicateKeyError:
            log.warning("index.key_duplicates", collection=OUTBOX)
        self.status.create_index([("campaign", ASCENDING), ("state", ASCENDING)], name="campaign")
        self.guard.ensure_indexes()

    # Intake

    def new_documents(self, limit: int) -> list[Doc]:
        """Documents producers inserted that the daemon has not looked at yet."""
        return list(self.outbox.find({"state": None}).limit(limit))

    def admit(self, doc_id: Any, admission: Admission) -> Doc | None:
        """Give a new document its first state; None if another daemon admitted it first."""
        now = self.clock.now()
        key = admission.fields.get("key")
        if key is not None and admission.problem is None:
            admission = self._unique_key(doc_id, key, admission)
        fields: Doc = {"created_at": now, "updated_at": now, "rev": 1, "synced": False}
        fields["kind"] = "broadcast" if admission.broadcast else "message"
        if admission.problem is None:
            fields.update(admission.fields, state=State.QUEUED.value)
        else:
            fields.update(state=State.REJECTED.value, error=admission.problem.as_error())
        update: Doc = {"$set": fields}
        strip = {name: "" for name in admission.strip if name not in fields}
        if strip:
            update["$unset"] = strip
        doc = self.outbox.find_one_and_update(
            {"_id": doc_id, "state": None}, update, return_document=ReturnDocument.AFTER
        )
        if doc is not None:
            self.project(doc)
        return doc

    def _unique_key(self, doc_id: Any, key: str, admission: Admission) -> Admission:
        """Backs up the unique index: a key already admitted makes this document a duplicate."""
        other = self.outbox.find_one({"key": key, "_id": {"$ne": doc_id}, "state": {"$ne": None}})
        if other is None:
            return admission
        problem = Problem(Reason.DUPLICATE_KEY, f"key {key!r} is message {other['_id']}")
        return Admission(problem=problem, broadcast=admission.broadcast)

    # Claim and fenced transitions

    def claim(self, limit: int, lease: timedelta) -> list[Doc]:
        """Claim up to `limit` due documents: replies first, then highest priority and oldest
        due, users and campaigns taking turns at equal priority (jobs/rules/fairness.py).

        Candidates are read in one query, then each is claimed by its id and state, so the
        server orders the queue once per batch rather than once per message. Candidates another
        daemon took first are skipped, and the candidates read again while more are due, so a
        racing daemon never comes back empty while work is due. When the database fails
        part-way, what was claimed so far is returned rather than lost to its lease: the caller
        sends it, or hands it back once the database returns.
        """
        claimed: list[Doc] = []
        try:
            for _ in range(CLAIM_ROUNDS):
                now = self.clock.now()
                order, more = self._candidates(now, limit - len(claimed))
                lost = self._claim_each(order, now, lease, limit, claimed)
                if len(claimed) >= limit or not order or not (lost and more):
                    break
        except ConnectionFailure:
            if not claimed:
                raise
            log.warning("claim.interrupted", claimed=len(claimed))
        try:
            self.project_many(claimed)
        except (ConnectionFailure, StoreUnavailable):
            # Left unsynced: resync writes these copies once the database is back.
            log.warning("claim.interrupted", claimed=len(claimed))
        return claimed

    def _candidates(self, now: datetime, wanted: int) -> tuple[list[Doc], bool]:
        """The candidates of one claim in claim order, and whether more are due than were read."""
        read = wanted * CANDIDATES_PER_CLAIM
        lane = reply_lane(self.outbox, now, wanted)
        found = candidates(self.outbox, now, read)
        more = len(found) == read
        senders = [doc for doc in found if not fairness.is_reply(doc)]
        if more and senders:
            top = senders[0].get("priority")
            shares = {fairness.share(doc) for doc in senders if doc.get("priority") == top}
            if len(shares) == 1:
                # One sender fills every candidate: look past it for the others' turns.
                found += other_shares(self.outbox, now, shares, wanted)
        unique = {doc["_id"]: doc for doc in [*lane, *found]}
        return fairness.take_turns(list(unique.values())), more

    def _claim_each(
        self, order: list[Doc], now: datetime, lease: timedelta, limit: int, claimed: list[Doc]
    ) -> int:
        """Claim candidates in order until `claimed` holds `limit`; returns how many were lost
        to another worker."""
        lost = 0
        for candidate in order:
            if len(claimed) >= limit:
                break
            try:
                doc = claim_by_id(self.outbox, candidate["_id"], now, lease)
            except OperationFailure as exc:
                if exc.code != TYPE_MISMATCH:
                    raise
                rejected = quarantine(self.outbox, self.status, now, candidate["_id"])
                if rejected is not None:
                    self.project(rejected)
                continue
            if doc is None:
                lost += 1
            else:
                claimed.append(doc)
        return lost

    def _fenced(self, doc: Mapping[str, Any], update: Doc, *, public: bool = True) -> Doc | None:
        """Apply `update` only while `doc` still holds its claim and return the result; a public
        change bumps `rev` and is projected."""
        if public:
            update.setdefault("$set", {}).update(updated_at=self.clock.now(), synced=False)
            update.setdefault("$inc", {})["rev"] = 1
        new = self.outbox.find_one_and_update(
            {"_id": doc["_id"], "state": State.SENDING.value, "claim_token": doc["claim_token"]},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if new is not None and public:
            self.project(new)
        return new

    def renew(
        self,
        doc: Mapping[str, Any],
        lease: timedelta,
        *,
        in_flight: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Extend the lease; `in_flight` marks that the request to Flowroute is about to go out.
        Neither is public: only `extra` fields that the status holds make a new revision."""
        fields = {"lease_until": self.clock.now() + lease, "in_flight": in_flight, **(extra or {})}
        return self._fenced(doc, {"$set": fields}, public=is_public(extra or {}))

    def finish(
        self,
        doc: Mapping[str, Any],
        state: State,
        *,
        problem: Problem | None = None,
        provider_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Record a terminal outcome of a claimed document."""
        fields, gone = outcome_fields(
            doc["claim_token"], state, self.clock.now(),
            problem=problem, provider_id=provider_id, extra=extra,
        )  # fmt: skip
        unset = dict.fromkeys(gone, "")
        return self._fenced(doc, {"$set": fields, "$unset": unset})

    def retry_later(
        self, doc: Mapping[str, Any], due_at: datetime, problem: Problem, *, refund: bool = False
    ) -> Doc | None:
        """Queue a claimed document again until `due_at`; `refund` un-counts the attempt."""
        fields = {"state": State.QUEUED.value, "due_at": due_at, "error": problem.as_error()}
        update: Doc = {"$set": fields, "$unset": {"claim_token": "", "lease_until": ""}}
        if refund:
            update["$inc"] = {"attempts": -1}
        return self._fenced(doc, update)

    def release(self, doc: Mapping[str, Any], *, keep_place: bool = False) -> Doc | None:
        """Hand back a claimed document that was never sent: due now (or, with `keep_place`,
        when it was due, so it keeps its turn), attempt refunded."""
        due_at = doc.get("due_at") if keep_place else None
        update: Doc = {
            "$set": {"state": State.QUEUED.value, "due_at": due_at or self.clock.now()},
            "$unset": {"claim_token": "", "lease_until": "", "in_flight": ""},
            "$inc": {"attempts": -1},
        }
        return self._fenced(doc, update)

    def record_late_success(self, doc: Mapping[str, Any], provider_id: str) -> Doc | None:
        """A fenced-out worker proves a send: upgrade the `unknown` its expired lease caused."""
        now = self.clock.now()
        new = self.outbox.find_one_and_update(
            {
                "_id": doc["_id"],
                "state": State.UNKNOWN.value,
                "last_claim_token": doc["claim_token"],
            },
            {
                "$set": {
                    "state": State.SENT.value,
                    "provider_id": provider_id,
                    "sent_at": now,
                    "updated_at": now,
                    "synced": False,
                },
                "$unset": {"error": ""},
                "$inc": {"rev": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if new is not None:
            self.project(new)
        return new

    # Recovery

    def expired_leases(self, limit: int) -> list[Doc]:
        """Claimed documents whose worker stopped renewing its lease."""
        now = self.clock.now()
        query = {"state": State.SENDING.value, "lease_until": {"$lte": now}}
        return list(self.outbox.find(query).limit(limit))

    # Fan-out

    def add_children(self, children: Iterable[Doc]) -> list[Doc]:
        """Insert a broadcast's messages; those already there (a resumed fan-out) are skipped."""
        docs = list(children)
        if not docs:
            return []
        try:
            self.outbox.insert_many(docs, ordered=False)
            inserted = docs
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(err.get("code") != 11000 for err in errors):
                raise
            skipped = {err["index"] for err in errors}
            inserted = [doc for i, doc in enumerate(docs) if i not in skipped]
        self.project_many(inserted)
        return inserted

    # Operator interventions (decided in jobs.rules.interventions)

    def _transition(self, doc: Mapping[str, Any], fields: Doc, unset: list[str]) -> Doc | None:
        """Change a document an operator chose, if nobody changed it since it was read."""
        now = self.clock.now()
        update: Doc = {
            "$set": {**fields, "updated_at": now, "synced": False},
            "$inc": {"rev": 1},
        }
        if unset:
            update["$unset"] = dict.fromkeys(unset, "")
        guard: Doc = {"_id": doc["_id"], "state": doc.get("state")}
        if "rev" in doc:
            guard["rev"] = doc["rev"]
        new = self.outbox.find_one_and_update(guard, update, return_document=ReturnDocument.AFTER)
        if new is not None:
            self.project(new)
        return new

    def cancel(self, doc: Mapping[str, Any], by: str) -> Doc | None:
        """End `doc` `cancelled` unless it was sent or claimed for sending meanwhile; a broadcast
        request being fanned out is taken from its daemon, whose next fenced write fails."""
        current: Mapping[str, Any] | None = doc
        # A daemon fanning the broadcast out renews it between our read and our write: read again.
        for _ in range(CANCEL_TRIES):
            if current is None or not interventions.may_cancel(current):
                return None
            fields = interventions.cancelled(by, self.clock.now())
            done = self._transition(current, fields, ["claim_token", "lease_until", "in_flight"])
            if done is not None:
                self.mark_synced()
                return done
            current = self.find(doc["_id"])
        return None

    def cancel_campaign(self, campaign: str, by: str) -> int:
        """Cancel every message of a broadcast still queued; those in flight finish."""
        now = self.clock.now()
        result = self.outbox.update_many(
            {"campaign": campaign, "state": State.QUEUED.value},
            {
                "$set": {**interventions.cancelled(by, now), "updated_at": now, "synced": False},
                "$inc": {"rev": 1},
            },
        )
        self.project_many(
            self.outbox.find(
                {"campaign": campaign, "state": State.CANCELLED.value, "synced": False}
            )
        )
        self.mark_synced()
        return int(result.modified_count)

    def retry(
        self, by: str, ids: list[Any] | None, campaign: str | None, reason: str | None
    ) -> list[Doc]:
        """Queue again the failed and unknown messages chosen, keeping their past in `history`."""
        retried = []
        for doc in self.outbox.find(interventions.retry_filter(ids, campaign, reason)):
            if doc.get("state") == State.UNKNOWN.value and "audience" not in doc:
                # The request may have left: the operator accepts a second text, so the spent
                # id is released for this message (before it is queued: a crash in between
                # leaves it unknown, and released for nothing else).
                spent_id = signing.signed_id(doc) or str(doc["_id"])
                self._spent.release(spent_id, doc["_id"], by=by, at=self.clock.now())
            fields = interventions.requeued(doc, by, self.clock.now())
            new = self._transition(
                doc, fields, ["error", "provider_id", "last_claim_token", "sent_at"]
            )
            if new is not None:
                retried.append(new)
        self.mark_synced()
        return retried

    def fanning_out(self) -> bool:
        """Whether a daemon holds a broadcast request it is still fanning out."""
        query = {"state": State.SENDING.value, "kind": "broadcast"}
        return self.outbox.find_one(query, {"_id": 1}) is not None

    def count_children(self, campaign: str) -> int:
        """How many messages a broadcast has fanned out to."""
        # Counted here rather than with count_documents, which needs aggregation.
        query = {"campaign": campaign, "kind": "message"}
        return sum(1 for _ in self.outbox.find(query, {"_id": 1}))

    def project(self, doc: Mapping[str, Any]) -> None:
        """Copy `doc` to `message_status` (see StatusProjection)."""
        self.projection.project([doc])

    def project_many(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Copy several documents to `message_status`."""
        self.projection.project(docs)

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

    def find_by_key(self, key: str) -> Doc | None:
        """The outbox document that holds this idempotency key."""
        return self.outbox.find_one({"key": key})


__all__ = ["OUTBOX", "STATUS", "OutboxStore"]
