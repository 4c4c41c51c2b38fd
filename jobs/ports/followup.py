"""The ports of following up a send: the delivery records of sent messages, the inbox of
callbacks the receiver stored, and the log of inbound texts (`jobs.mongo.delivery`,
`jobs.mongo.inbox`, `jobs.mongo.inbound`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from jobs.model import Problem, State
from jobs.ports.outbox import Doc, Outbox

# What came of a receipt (`Delivery.apply_receipt`): it moved its message to a new state, it was
# kept without one, it was had already, or no message of ours has its id (yet).
APPLIED, KEPT, DUPLICATE, UNKNOWN_ID = "applied", "kept", "duplicate", "unknown_id"


class Delivery(Protocol):
    """What happens to a message after Flowroute accepted it (or may have). None of these writes
    follows a claim: each is guarded on the revision it was computed from."""

    @property
    def store(self) -> Outbox:
        """The outbox the messages are in."""
        ...

    def ensure_indexes(self) -> None: ...

    def by_provider_id(self, provider_id: str) -> Doc | None:
        """The daemon's message Flowroute gave this id (never a document it did not seal)."""
        ...

    def apply_receipt(self, receipt: Mapping[str, Any]) -> tuple[str, State | None]:
        """Fold a receipt into its message: the outcome and the state it moved to, if any."""
        ...

    def awaiting_receipt(
        self, now: datetime, after: timedelta, horizon: timedelta, limit: int
    ) -> list[Doc]:
        """Sent messages with no final receipt whose next lookup is due."""
        ...

    def polled(self, doc: Mapping[str, Any], next_at: datetime | None) -> Doc | None:
        """Note a lookup; `next_at` None means polling stops."""
        ...

    def in_doubt(self, now: datetime, after: timedelta, limit: int) -> list[Doc]:
        """Messages left `unknown` long enough ago, whose next reconciliation is due."""
        ...

    def found(self, doc: Mapping[str, Any], provider_id: str, evidence: Doc) -> Doc | None:
        """Flowroute has the message: it was sent, with this id."""
        ...

    def absent(self, doc: Mapping[str, Any], evidence: Doc, problem: Problem) -> Doc | None:
        """Flowroute never had it: queue it again, now."""
        ...

    def too_old(self, doc: Mapping[str, Any], evidence: Doc, problem: Problem) -> Doc | None:
        """Flowroute never had it, and it is too late to send it now: failed, with why."""
        ...

    def undecided(self, doc: Mapping[str, Any], retry_at: datetime, evidence: Doc) -> Doc | None:
        """Not provable yet: stay unknown and look again at `retry_at`."""
        ...


class Inbox(Protocol):
    """The callbacks the receiver stored, each applied once by the daemon."""

    def ensure_indexes(self) -> None: ...

    def due(
        self, now: datetime, limit: int, only: str | None = None, besides: str | None = None
    ) -> list[Doc]:
        """Entries not applied yet, of the kind `only`, or of any kind `besides` that one."""
        ...

    def applied(self, entry: Doc, now: datetime, outcome: str, reason: str | None = None) -> None:
        """Mark an entry done with `outcome`."""
        ...

    def set_aside(self, entry: Doc, now: datetime, outcome: str | None, detail: str | None) -> None:
        """Keep an entry Flowroute's record did not confirm."""
        ...

    def defer(self, entry: Doc, now: datetime) -> None:
        """Look at an entry again next cycle, without counting a try."""
        ...

    def wait(
        self,
        entry: Doc,
        now: datetime,
        delay: timedelta,
        horizon: timedelta | None = None,
        unconfirmed: str | None = None,
    ) -> str:
        """Keep an entry aside to try again later; after `horizon` it is kept but orphaned."""
        ...


class InboundLog(Protocol):
    """The inbound texts the daemon applied, and what it did about each."""

    def ensure_indexes(self) -> None: ...

    def record(self, fields: Doc, now: datetime) -> bool:
        """Keep an inbound message; False when it was already kept and settled."""
        ...

    def settle(self, inbound_id: str, keyword: str | None, outcome: str, replied: bool) -> None:
        """Record what was done about an inbound message."""
        ...

    def replies_since(self, number: str, since: datetime) -> int:
        """How many of `number`'s texts were answered since then."""
        ...

    def answered_since(self, number: str, keyword: str, since: datetime) -> bool:
        """Whether `number` got a reply to `keyword` since then."""
        ...

    def opt_out_counts(self, start: datetime, end: datetime) -> tuple[Counter[str], Counter[str]]:
        """Per sender number, between the two times: opt-outs received and messages sent."""
        ...


class Handled(Protocol):
    """What a keyword handler made of an inbound text, as the inbound log records it."""

    @property
    def keyword(self) -> str: ...

    @property
    def outcome(self) -> str: ...

    @property
    def replied(self) -> bool: ...


class KeywordOptIn(Protocol):
    """Opt-in by keyword, JOIN then YES (`jobs.optin.keywords`): what it made of an inbound text
    Flowroute confirmed, or None when the text is not its business."""

    def __call__(self, fields: Mapping[str, Any]) -> Handled | None: ...
