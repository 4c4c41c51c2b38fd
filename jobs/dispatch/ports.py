"""The ports of the send cycle: the interfaces it depends on, with the contract each implementation
keeps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from jobs.model import Problem, State
from jobs.rules import signing
from jobs.rules.hold import Hold
from jobs.rules.intake import Admission

Doc = dict[str, Any]


class Outcome(StrEnum):
    """What came of one request to Flowroute, as a send guard records it."""

    SENT = "sent"
    NOT_SENT = "not_sent"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True)
class Verdict:
    """What a send guard knows about the requests made for one message."""

    provider_id: str | None = None  # set when a request was accepted: the message was sent
    in_doubt: bool = False  # a request may have reached Flowroute with no answer recorded


def claim_ticket(doc: Mapping[str, Any]) -> str:
    """The send token of the claim `doc` was returned by: its id and the revision the claim
    made (two workers holding one claim on a non-atomic server hold the same one)."""
    return f"{doc['_id']}:{doc['rev']}"


@dataclass(frozen=True)
class SendTicket:
    """One send opened by `Outbox.begin_send`, closed by `Outbox.finish_send`: the send guard's
    token and the signed id the request spends, under the claim it was opened for."""

    message_id: Any
    token: str  # the send guard's token of this claim
    spent_id: str  # the signed id the request spends
    claim: str  # the claim token the id is spent under: a copy claimed at the same rev has another

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> SendTicket:
        """The ticket a send under the claim `doc` was returned by opens (or opened)."""
        spent_id = signing.signed_id(doc) or str(doc["_id"])
        return cls(doc["_id"], claim_ticket(doc), spent_id, str(doc["claim_token"]))


# How a caller of `Outbox.begin_send` can have lost its claim (`SendRefused.lost`).
CLAIM_ENDED = "the claim ended before its send"
TICKET_TAKEN = "another worker holds this claim's send ticket"


@dataclass(frozen=True)
class SendRefused:
    """Why `Outbox.begin_send` opened no send. `lost` says how the caller lost its claim, None
    when it still held it; `replay_of` names the id a send already spent, when the document is
    a copy of one that was sent."""

    lost: str | None = None
    replay_of: str | None = None


class SendGuard(Protocol):
    """At most one request to Flowroute per claim, and what lease recovery may conclude.

    `take` is called after the fenced in-flight mark and before the request leaves; it returns a
    token, or None when another worker already holds this claim's send (only possible on a
    server whose find-and-modify is not atomic). `settle` records the outcome of the request;
    `verdict` tells lease recovery what is known about a message whose worker died. `void`
    lets recovery take, as never sent, the token a message marked in flight names (the mark's
    `ticket` field), True when nobody had taken it: then no request left. `taken_by_a_copy`
    tells, when `take` refused, whether a copy of a sent document is being replayed.
    """

    def ensure_indexes(self) -> None: ...

    def take(self, doc: Mapping[str, Any]) -> str | None: ...

    def settle(self, token: str, outcome: Outcome, provider_id: str | None = None) -> None: ...

    def verdict(self, doc: Mapping[str, Any]) -> Verdict: ...

    def void(self, doc: Mapping[str, Any]) -> bool: ...

    def taken_by_a_copy(self, doc: Mapping[str, Any]) -> bool: ...


class NoGuard:
    """The send guard of an atomic server: a claim is never held by two workers, so the fenced
    in-flight mark is guard enough, and lease recovery reads the outbox document itself."""

    def ensure_indexes(self) -> None:
        """Nothing to index."""

    def take(self, doc: Mapping[str, Any]) -> str | None:
        """Always granted: the fenced renewal before it already proved the claim is ours."""
        return claim_ticket(doc)

    def settle(self, token: str, outcome: Outcome, provider_id: str | None = None) -> None:
        """Nothing to record: the outbox document records the outcome."""

    def verdict(self, doc: Mapping[str, Any]) -> Verdict:
        """In doubt exactly when the document was marked in flight."""
        return Verdict(in_doubt=doc.get("in_flight") is True)

    def void(self, doc: Mapping[str, Any]) -> bool:
        """Never: without tickets, the in-flight mark is the last word before the request."""
        return False

    def taken_by_a_copy(self, doc: Mapping[str, Any]) -> bool:
        """Never asked: `take` is always granted."""
        return False


class SpentIds(Protocol):
    """The daemon's record of the signed ids it spent (`jobs.mongo.spent`): a message's id is
    taken, atomically, before its request leaves and kept once the request may have left; a
    broadcast request's id is open while it fans out and closed after."""

    def take(self, spent_id: str, message_id: Any, token: str) -> bool: ...

    def settle(self, spent_id: str, token: str, outcome: Outcome) -> None: ...

    def sent(self, spent_id: str, token: str, provider_id: str) -> None:
        """Flowroute accepted the request of `token`; written by the next `flush`."""
        ...

    def flush(self) -> int:
        """Write the accepted requests `sent` kept (the send cycle calls it once per cycle)."""
        ...

    def open_campaign(self, spent_id: str, message_id: Any) -> bool: ...

    def close_campaign(self, spent_id: str) -> None: ...


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


class Directory(Protocol):
    """Who may send from which number, and who may be texted (`jobs.mongo.directory`)."""

    def ensure_indexes(self) -> None: ...

    def sources_for(self, user: str) -> list[str]: ...

    def max_priority(self, user: str) -> int: ...

    def recipient(self, number: str) -> Doc | None: ...

    def consent_of(self, numbers: list[str]) -> dict[str, Doc | None]: ...

    def verified_after(self, after: str | None, limit: int) -> list[str]: ...

    def opt_out(self, number: str, *, now: datetime, reason: str) -> None: ...

    def is_source(self, number: str) -> bool: ...
