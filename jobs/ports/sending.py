"""The ports of one send: the send guard and the spent ids a store keeps them with, and the
ticket of a send the store opened, with what may come of its request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from jobs.rules import signing


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
