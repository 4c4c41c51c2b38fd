"""The outbox port: the store the send cycle runs on, and the contract its implementations keep."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from jobs.errors import StoreRefused
from jobs.model import Problem, State
from jobs.ports.sending import Outcome, SendGuard, SendRefused, SendTicket, SpentIds
from jobs.rules.hold import Hold
from jobs.rules.intake import Admission

Doc = dict[str, Any]


class Sealer(Protocol):
    """The daemon's seal on the documents it admits or makes (`jobs.keys.Signatures` is one; the
    rules are in jobs/rules/seal.py)."""

    def seal(self, doc: Mapping[str, Any], origin: str) -> str: ...

    def sealed(self, doc: Mapping[str, Any], origin: str | None = None) -> bool: ...


class AccountHolds(Protocol):
    """The account hold every daemon of one outbox shares (`jobs.mongo.account`)."""

    def current(self) -> Hold | None: ...

    def hold(self, code: str, detail: str) -> Hold: ...

    def release(self) -> bool: ...


class Outbox(Protocol):
    """The outbox store the send cycle runs on (`jobs.mongo.store.OutboxStore` on MongoDB,
    `jobs.doubles.memory.MemoryOutbox` in memory). Its contract, which tests/outbox_contract.py
    checks against both:

    - The outbox document is the truth. Every public change (to a field the status holds, see
      `jobs.model.STATUS_FIELDS`) bumps its `rev` and is copied to the document's public status,
      which never goes back to an older `rev`. The lease and the in-flight mark are private:
      renewing them writes no status and makes no revision.
    - A copy whose writer died is written by a later `resync`; `mark_synced` ends the
      bookkeeping of the copies written so far (the send cycle calls it once per cycle).
    - `admit` gives a new document (one without `state`) its first state exactly once; a second
      admission of the same document returns None. A key already admitted makes it a duplicate.
    - `claim` is atomic: a due queued document is handed to one caller only, as `sending`, with
      a fresh `claim_token`, `lease_until = now + lease`, `in_flight` false, `attempts` and
      `rev` one higher; highest `priority` first, then the earliest `due_at`. A document that
      makes the claim fail (counters that are not numbers or at their limit, a size at the
      limit) is rejected with the server's reason instead of blocking the queue.
    - Every write of a message's state is a change the transition table
      (jobs/rules/transitions.py) allows from the state the document holds; a change it
      refuses writes nothing (None, or False for `reintake`), alike in every store.
    - Every write after a claim (`renew`, `finish`, `retry_later`, `release`) is fenced: it
      applies only while the document is still `sending` under the same `claim_token`, and
      returns None otherwise, so a worker whose lease expired cannot overwrite another's record.
    - A claim's request to Flowroute leaves between `begin_send` and `finish_send`: at most one
      per claim, and none for a signed id a send already spent, unless that send is known not to
      have left.
    - `record_late_success` upgrades to `sent` only a document left `unknown` by the caller's
      own expired claim.
    - `insert` raises `jobs.errors.DuplicateKey` for a key its user already has in the outbox
      (keys are scoped per user: one user cannot take another's);
      `add_children` inserts what is not there yet and returns what it inserted.
    - The store raises `jobs.errors.StoreUnavailable` when it cannot reach its database.
    - With a `sealer`, only sealed documents are trusted (`trusts`): only they get a status
      copy, and `add_children` replaces a document squatting a made message's id unless the
      daemon made it. `reintake` turns an untrusted document back into a new producer document
      (no `state`, no daemon-owned field), fenced on its state and claim token.
    """

    @property
    def sealer(self) -> Sealer | None:
        """What seals and checks the daemon's documents; None when signatures are off."""
        ...

    def trusts(self, doc: Mapping[str, Any]) -> bool:
        """Whether the daemon may act on `doc`: it carries the seal, or there is no sealer."""
        ...

    def reintake(self, doc: Mapping[str, Any]) -> bool:
        """Send an untrusted document through intake again; False if it changed meanwhile."""
        ...

    def begin_send(self, doc: Mapping[str, Any], lease: timedelta) -> SendTicket | SendRefused:
        """Open the one request to Flowroute of the claim `doc` was returned by, just before it
        leaves: mark it in flight (fenced, the lease renewed), take the send guard's token, and
        spend its signed id. Refused when the claim was lost or the id is already spent."""
        ...

    def finish_send(
        self, ticket: SendTicket, outcome: Outcome, provider_id: str | None = None
    ) -> None:
        """Close a send with what came of its request. Sent: the guard and the spent id keep the
        202 (the id's record is written by `spent.flush`). In doubt: the id stays spent. Not
        sent: the id is freed for the next claim of the same message. Safe to repeat."""
        ...

    @property
    def guard(self) -> SendGuard:
        """The send guard this store was set up with."""
        ...

    @property
    def spent(self) -> SpentIds:
        """The record of spent signed ids."""
        ...

    @property
    def holds(self) -> AccountHolds:
        """The account hold shared by the daemons of this outbox."""
        ...

    def new_id(self) -> Any:
        """A fresh id for a producer's document, made before it is signed."""
        ...

    def ensure_indexes(self) -> None: ...

    def new_documents(self, limit: int) -> list[Doc]:
        """Documents producers inserted that no daemon has admitted yet."""
        ...

    def admit(self, doc_id: Any, admission: Admission) -> Doc | None:
        """Give a new document its first state; None if it was admitted already."""
        ...

    def admit_many(self, admitted: list[tuple[Doc, Admission]]) -> list[tuple[Any, StoreRefused]]:
        """`admit` for many documents at once; returns those the server refused for their
        content (to be set aside), each with its refusal."""
        ...

    def claim(self, limit: int, lease: timedelta) -> list[Doc]:
        """Claim up to `limit` due documents, atomically, in priority then due order."""
        ...

    def set_aside(self, doc_id: Any, expected: Mapping[str, Any], detail: str) -> Doc | None:
        """Reject, as `invalid_document` with `detail`, a document the server cannot update as
        a step needs, if it still matches `expected`; the write sets counters rather than
        incrementing them and makes room when the document is too large for it."""
        ...

    def renew(
        self,
        doc: Mapping[str, Any],
        lease: timedelta,
        *,
        in_flight: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Extend the lease (fenced); `in_flight` marks that the request is about to leave."""
        ...

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
        ...

    def retry_later(
        self, doc: Mapping[str, Any], due_at: datetime, problem: Problem, *, refund: bool = False
    ) -> Doc | None:
        """Queue a claimed document again until `due_at` (fenced); `refund` un-counts it."""
        ...

    def release(self, doc: Mapping[str, Any], *, keep_place: bool = False) -> Doc | None:
        """Hand back a claimed, unsent document: due now (or when it was due, with
        `keep_place`), its attempt refunded (fenced)."""
        ...

    def record_late_success(self, doc: Mapping[str, Any], provider_id: str) -> Doc | None:
        """Upgrade to `sent` the `unknown` this claim's expired lease caused."""
        ...

    def expired_leases(self, limit: int) -> list[Doc]:
        """Claimed documents whose lease ran out."""
        ...

    def add_children(self, children: Iterable[Doc]) -> list[Doc]:
        """Insert a broadcast's messages not already there; returns those inserted."""
        ...

    def fanning_out(self) -> bool:
        """Whether a daemon holds a broadcast request it is still fanning out."""
        ...

    def count_children(self, campaign: str) -> int:
        """How many messages a broadcast has fanned out to."""
        ...

    def cancel_campaign(self, campaign: str, by: str) -> int:
        """Cancel every queued message of a broadcast (an operator's cancel); returns how many."""
        ...

    def resync(self, limit: int) -> int:
        """Write the status copies a crashed worker left unwritten; returns how many."""
        ...

    def mark_synced(self) -> int:
        """Record that the copies written so far are done, so `resync` leaves them alone."""
        ...

    def find(self, doc_id: Any) -> Doc | None:
        """The outbox document with this id."""
        ...

    def projected(self, doc_id: Any) -> Doc | None:
        """The public status copy of the document with this id."""
        ...

    def insert(self, doc: Doc) -> Any:
        """Insert a producer's document; raises DuplicateKey when its key is taken."""
        ...

    def find_by_key(self, key: str, user: str) -> Doc | None:
        """The outbox document that holds this user's idempotency key."""
        ...
