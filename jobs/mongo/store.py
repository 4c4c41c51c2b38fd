"""The outbox store: every write of a message's state, fenced on its claim token, and its status."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure

from jobs.clock import Clock
from jobs.errors import StoreRefused, StoreUnavailable, document_fault
from jobs.model import Problem, Reason, State, outcome_fields
from jobs.mongo import guard, poison
from jobs.mongo.account import AccountHold
from jobs.mongo.claim import candidates, claim_by_id, other_shares, quarantine, reply_lane
from jobs.mongo.connection import adapter
from jobs.mongo.guard import GuardSetting
from jobs.mongo.poison import caused_by_document
from jobs.mongo.projection import OUTBOX, STATUS, StatusProjection, is_public
from jobs.mongo.spent import SpentIds
from jobs.ports import (
    CLAIM_ENDED,
    TICKET_TAKEN,
    Outcome,
    Sealer,
    SendGuard,
    SendRefused,
    SendTicket,
)
from jobs.rules import fairness, interventions, replay, seal, signing
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

    def reintake(self, doc: Mapping[str, Any]) -> bool:
        """Make a document without the daemon's seal a new producer document again: its state
        and every daemon-owned field removed, so intake checks and normalises it. Fenced on the
        state and claim token it was read with."""
        gone = dict.fromkeys(sorted({"state", *replay.DAEMON_FIELDS} & doc.keys()), "")
        fence = {"_id": doc["_id"], "state": doc.get("state")}
        fence["claim_token"] = doc.get("claim_token")
        done = self.outbox.update_one(fence, {"$unset": gone}).modified_count == 1
        if done:
            log.warning("message.unsealed", message_id=str(doc["_id"]), state=doc.get("state"))
        return done

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

    # Intake

    def new_documents(self, limit: int) -> list[Doc]:
        """Documents producers inserted that the daemon has not looked at yet. One larger than
        `poison.MAX_PRODUCER_BYTES` is measured on the server and rejected unread."""
        query = {"state": None}
        try:
            docs = poison.sized(self.outbox, query, limit)
        except (NotImplementedError, OperationFailure):  # a server without $bsonSize
            return list(self.outbox.find(query).limit(limit))
        fresh = []
        for doc in docs:
            if "_bytes" not in doc:
                fresh.append(doc)
                continue
            detail = f"{doc['_bytes']} bytes; a document may hold {poison.MAX_PRODUCER_BYTES}"
            try:
                self.set_aside(doc["_id"], {"state": None}, "too large: " + detail)
            except StoreRefused as exc:
                if not document_fault(exc):
                    raise
                log.error("message.stuck", message_id=str(doc["_id"]), error=str(exc))
        return fresh

    def set_aside(self, doc_id: Any, expected: Mapping[str, Any], detail: str) -> Doc | None:
        """Reject a document the server cannot update as the step needs (see jobs/mongo/poison),
        if it still matches `expected`; None when it no longer does."""
        new = poison.set_aside(self.outbox, self.status, doc_id, expected, detail, self.clock.now())
        if new is not None and self.trusts(new):
            self.project(new)
        elif new is not None:
            self.projection.project_refused(new)  # refused before intake could seal it
        return new

    def admit(self, doc_id: Any, admission: Admission) -> Doc | None:
        """Give a new document its first state; None if another daemon admitted it first."""
        key = admission.fields.get("key")
        if key is not None and admission.problem is None:
            admission = self._unique_key(doc_id, admission.fields["user"], key, admission)
        doc = self.outbox.find_one_and_update(
            {"_id": doc_id, "state": None},
            _admission_update(admission, self.clock.now()),
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            self.project(doc)
        return doc

    def admit_many(self, admitted: list[tuple[Doc, Admission]]) -> list[tuple[Any, StoreRefused]]:
        """Give many new documents their first state in one unordered bulk write, and their
        status copies in another: thousands of documents, valid or not, cost a few commands.
        One with an idempotency key goes through `admit`, which checks the key. Returns the
        documents the server refused for their content, each with its refusal, to be set aside;
        the others are admitted (or were, by another daemon)."""
        refused: list[tuple[Any, StoreRefused]] = []
        plain: list[tuple[Doc, Admission]] = []
        for doc, admission in admitted:
            if admission.fields.get("key") is None or admission.problem is not None:
                plain.append((doc, admission))
                continue
            try:
                self.admit(doc["_id"], admission)
            except StoreRefused as exc:
                if not document_fault(exc):
                    raise
                refused.append((doc["_id"], exc))
        if not plain:
            return refused
        now = self.clock.now()
        updates = [_admission_update(admission, now) for _, admission in plain]
        pairs = zip(plain, updates, strict=True)
        ops = [UpdateOne({"_id": d["_id"], "state": None}, u) for (d, _), u in pairs]
        try:
            matched = self.outbox.bulk_write(ops, ordered=False).matched_count
            failed: set[int] = set()
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(not poison.refused_for_itself(err) for err in errors):
                raise
            failed = {err["index"] for err in errors}
            for err in errors:
                why = StoreRefused(str(err.get("errmsg")), err.get("code"), err)
                refused.append((plain[err["index"]][0]["_id"], why))
            matched = int(exc.details.get("nMatched", 0))
        done = [(plain[i][0], updates[i]) for i in range(len(plain)) if i not in failed]
        if matched == len(done):
            # Every one was ours to admit: their new state is known without reading it back.
            self.project_many([_updated(doc, update) for doc, update in done])
        else:
            # Another daemon admitted some first: copy what the outbox now holds of them all.
            ids = [doc["_id"] for doc, _ in done]
            self.project_many(self.outbox.find({"_id": {"$in": ids}, "state": {"$ne": None}}))
        return refused

    def _unique_key(self, doc_id: Any, user: str, key: str, admission: Admission) -> Admission:
        """Backs up the unique index: a key the same user already had admitted makes this
        document a duplicate."""
        query = {"user": user, "key": key, "_id": {"$ne": doc_id}, "state": {"$ne": None}}
        other = self.outbox.find_one(query)
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
        unique = {_id_key(doc["_id"]): doc for doc in [*lane, *found]}
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
                if not caused_by_document(exc):
                    raise
                doc, rejected = quarantine(self.outbox, self.status, now, lease, candidate["_id"])
                if rejected is not None:
                    self.project(rejected)
                if doc is None:
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

    # The send: at most one request per claim, none for a spent id (see jobs/mongo/tickets.py
    # and jobs/mongo/spent.py)

    def begin_send(self, doc: Mapping[str, Any], lease: timedelta) -> SendTicket | SendRefused:
        """Open the request of this claim: the fenced in-flight mark finds out whether the claim
        is still held, the send guard settles the rare race in which two workers both passed it,
        and the spent id refuses a copy of a message already sent."""
        ticket = SendTicket.of(doc)
        mark = {"ticket": ticket.token}  # what lease recovery may void (jobs/dispatch/recovery)
        if self.renew(doc, lease, in_flight=True, extra=mark) is None:
            return SendRefused(lost=CLAIM_ENDED)
        token = self.guard.take(doc)
        if token is None:
            copy = str(doc["_id"]) if self.guard.taken_by_a_copy(doc) else None
            return SendRefused(lost=TICKET_TAKEN, replay_of=copy)
        # Spent under this claim's own token: a copy claimed at the same revision has another.
        if not self._spent.take(ticket.spent_id, doc["_id"], ticket.claim):
            self.guard.settle(token, Outcome.NOT_SENT)
            return SendRefused(replay_of=ticket.spent_id)
        return ticket

    def finish_send(
        self, ticket: SendTicket, outcome: Outcome, provider_id: str | None = None
    ) -> None:
        """Close a send with what came of its request; the 202 reaches the spent id with the
        cycle's others, at `spent.flush`."""
        if outcome is Outcome.SENT and provider_id is not None:
            # The spent id keeps the 202 whatever later happens to the outbox document.
            self._spent.sent(ticket.spent_id, ticket.claim, provider_id)
        self.guard.settle(ticket.token, outcome, provider_id)
        if outcome is Outcome.NOT_SENT:  # an unsettled spent id already counts as sent
            self._spent.settle(ticket.spent_id, ticket.claim, outcome)

    # Recovery

    def expired_leases(self, limit: int) -> list[Doc]:
        """Claimed documents whose worker stopped renewing its lease."""
        now = self.clock.now()
        query = {"state": State.SENDING.value, "lease_until": {"$lte": now}}
        return list(self.outbox.find(query).limit(limit))

    # Fan-out

    def add_children(self, children: Iterable[Doc]) -> list[Doc]:
        """Insert a broadcast's messages; those already there (a resumed fan-out) are skipped,
        and so is one the server refuses for its content, which costs that message only."""
        docs = list(children)
        if not docs:
            return []
        try:
            self.outbox.insert_many(docs, ordered=False)
            inserted = docs
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            refused = [err for err in errors if err.get("code") != 11000]
            if any(not poison.refused_for_itself(err) for err in refused):
                raise
            for err in refused:
                self._child_refused(docs[err["index"]], str(err.get("errmsg")))
            skipped = {err["index"] for err in errors}
            inserted = [doc for i, doc in enumerate(docs) if i not in skipped]
            taken = [docs[err["index"]] for err in errors if err.get("code") == 11000]
            inserted += self._replace_squatters(taken)
        except OperationFailure as exc:
            # The server refused the whole insert (a message past the size limit): one by one.
            if not caused_by_document(exc):
                raise
            added = {doc["_id"]: self._add_child(doc) for doc in docs}
            inserted = [doc for doc in docs if added[doc["_id"]] is True]
            inserted += self._replace_squatters([d for d in docs if added[d["_id"]] is None])
        self.project_many(inserted)
        return inserted

    def _add_child(self, doc: Doc) -> bool | None:
        """True if inserted, None if its id is taken, False if the server refused it."""
        try:
            self.outbox.insert_one(doc)
        except DuplicateKeyError:
            return None
        except OperationFailure as exc:
            if not caused_by_document(exc):
                raise
            self._child_refused(doc, poison.server_reason(exc))
            return False
        return True

    def _child_refused(self, doc: Doc, why: str) -> None:
        log.warning("child.refused", message_id=str(doc["_id"])[:80], detail=why[:300])

    def _replace_squatters(self, made: list[Doc]) -> list[Doc]:
        """The daemon's messages whose ids someone else's documents took first (a producer can
        insert `<campaign>:<number>` before the fan-out does): a document the daemon did not
        make there is replaced, so it suppresses nobody. Returns the messages put in place."""
        if self._sealer is None or not made:
            return []
        there = {d["_id"]: d for d in self.outbox.find({"_id": {"$in": [m["_id"] for m in made]}})}
        replaced = []
        for doc in made:
            squatter = there.get(doc["_id"])
            if squatter is None or self._sealer.sealed(squatter, seal.MADE):
                continue
            fence = {"_id": doc["_id"], "seal": squatter.get("seal")}
            if self.outbox.replace_one(fence, doc).modified_count == 1:
                log.warning("message.squatter_replaced", message_id=str(doc["_id"]))
                replaced.append(doc)
        return replaced

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

    def find_by_key(self, key: str, user: str) -> Doc | None:
        """The outbox document that holds this user's idempotency key."""
        return self.outbox.find_one({"user": user, "key": key})


__all__ = ["OUTBOX", "STATUS", "OutboxStore"]


def _id_key(value: Any) -> Any:
    """An `_id` as a dictionary key: itself, or for an id Python cannot hash (a document, a
    Decimal128, which a producer may insert) its type and its representation."""
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, repr(value))
    return value


def _admission_update(admission: Admission, now: datetime) -> Doc:
    """What admission writes: the first state (queued, or rejected with its reason), the
    normalised fields, the seal, and the fields intake strips removed."""
    fields: Doc = {"created_at": now, "updated_at": now, "rev": 1, "synced": False}
    fields["kind"] = "broadcast" if admission.broadcast else "message"
    if admission.seal is not None:
        fields["seal"] = admission.seal
    if admission.problem is None:
        fields.update(admission.fields, state=State.QUEUED.value)
    else:
        fields.update(state=State.REJECTED.value, error=admission.problem.as_error())
    update: Doc = {"$set": fields}
    strip = {name: "" for name in admission.strip if name not in fields}
    if strip:
        update["$unset"] = strip
    return update


def _updated(doc: Mapping[str, Any], update: Mapping[str, Any]) -> Doc:
    """`doc` as a `$set`/`$unset` of top-level fields leaves it."""
    new = {k: v for k, v in doc.items() if k not in update.get("$unset", {})}
    new.update(update["$set"])
    return new
