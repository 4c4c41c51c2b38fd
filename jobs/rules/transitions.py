"""The transition table: which event may change a message in which state, and what each change
writes. Pure: both outbox stores ask it what to write, and write nothing it refuses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from jobs.model import Problem, Reason, State

Doc = dict[str, Any]


class Event(StrEnum):
    """What can happen to a message; `TABLE` says from which states."""

    ADMIT = "admit"  # intake accepted a new document
    REFUSE = "refuse"  # intake rejected it
    CLAIM = "claim"
    RENEW = "renew"  # the claim's lease extended
    SEND_BEGUN = "send_begun"  # marked in flight: the claim's request is about to leave
    FINISH_SENT = "finish_sent"
    FINISH_FAILED = "finish_failed"
    FINISH_REJECTED = "finish_rejected"
    FINISH_UNKNOWN = "finish_unknown"
    FINISH_EXPANDED = "finish_expanded"
    RETRY_LATER = "retry_later"
    RELEASE = "release"
    LATE_SUCCESS = "late_success"  # a fenced-out worker proves the send its lease left unknown
    CANCEL = "cancel"
    CANCEL_BROADCAST = "cancel_broadcast"
    RETRY = "retry"  # an operator queues a failed or unknown message again
    SET_ASIDE = "set_aside"  # a document the server cannot update as a step needs
    REINTAKE = "reintake"  # a document without the daemon's seal goes through intake again


class Fence(StrEnum):
    """What a write is conditioned on besides the document's state."""

    STATE = "state"  # nothing else: the claimer and admission choose the documents
    CLAIM = "claim"  # the caller's claim token: a worker whose lease expired writes nothing
    LAST_CLAIM = "last_claim"  # the claim that ended it was the caller's (`last_claim_token`)
    READ = "read"  # the revision the caller read: an operator acts on what they saw
    READ_CLAIM = "read_claim"  # the claim token the caller read, or its absence
    EXPECTED = "expected"  # the fields the caller names


@dataclass(frozen=True)
class Rule:
    """Where an event leads from a state: the new state (None: the state is removed), what the
    write is fenced on, whether the status copies it, and the reason it records, when fixed."""

    to: State | None
    fence: Fence
    public: bool = True
    reason: Reason | None = None


FINISH = MappingProxyType(
    {
        State.SENT: Event.FINISH_SENT,
        State.FAILED: Event.FINISH_FAILED,
        State.REJECTED: Event.FINISH_REJECTED,
        State.UNKNOWN: Event.FINISH_UNKNOWN,
        State.EXPANDED: Event.FINISH_EXPANDED,
    }
)
_NEW: tuple[State | None, ...] = (None,)
_SENDING: tuple[State | None, ...] = (State.SENDING,)
_CANCELLED = Rule(State.CANCELLED, Fence.READ, reason=Reason.CANCELLED)
_ROWS: dict[Event, tuple[tuple[State | None, ...], Rule]] = {
    Event.ADMIT: (_NEW, Rule(State.QUEUED, Fence.STATE)),
    Event.REFUSE: (_NEW, Rule(State.REJECTED, Fence.STATE)),
    Event.CLAIM: ((State.QUEUED,), Rule(State.SENDING, Fence.STATE)),
    Event.RENEW: (_SENDING, Rule(State.SENDING, Fence.CLAIM, public=False)),
    Event.SEND_BEGUN: (_SENDING, Rule(State.SENDING, Fence.CLAIM, public=False)),
    **{event: (_SENDING, Rule(state, Fence.CLAIM)) for state, event in FINISH.items()},
    Event.RETRY_LATER: (_SENDING, Rule(State.QUEUED, Fence.CLAIM)),
    Event.RELEASE: (_SENDING, Rule(State.QUEUED, Fence.CLAIM)),
    Event.LATE_SUCCESS: ((State.UNKNOWN,), Rule(State.SENT, Fence.LAST_CLAIM)),
    # Not yet sent nor being sent: a message in a daemon's hands finishes.
    Event.CANCEL: ((None, State.QUEUED), _CANCELLED),
    # A broadcast request being fanned out can be stopped: its daemon's next fenced write fails.
    Event.CANCEL_BROADCAST: ((None, State.QUEUED, State.SENDING), _CANCELLED),
    Event.RETRY: ((State.FAILED, State.UNKNOWN), Rule(State.QUEUED, Fence.READ)),
    Event.SET_ASIDE: (
        (None, State.QUEUED, State.SENDING, State.SENT, State.UNKNOWN),
        Rule(State.REJECTED, Fence.EXPECTED, reason=Reason.INVALID_DOCUMENT),
    ),
    Event.REINTAKE: (tuple(State), Rule(None, Fence.READ_CLAIM, public=False)),
}
# (state, event) -> rule; a pair that is not here is refused.
TABLE: Mapping[tuple[State | None, Event], Rule] = MappingProxyType(
    {(state, event): rule for event, (froms, rule) in _ROWS.items() for state in froms}
)
_VALUES = frozenset(state.value for state in State)


def rule(state: object, event: Event) -> Rule | None:
    """The row of `event` from `state` (a document's stored value); None when it is refused."""
    if state is None:
        return TABLE.get((None, event))
    if not isinstance(state, str) or state not in _VALUES:
        return None
    return TABLE.get((State(state), event))


def allows(state: object, event: Event) -> bool:
    """Whether `event` may happen to a message in `state`."""
    return rule(state, event) is not None


def sources(event: Event) -> tuple[State | None, ...]:
    """The states `event` may happen in, in the table's order."""
    return _ROWS[event][0]


@dataclass(frozen=True)
class Change:
    """One allowed write: the fields the document must still hold (`fence`, besides its `_id`),
    the fields set, removed and incremented; `public` when the status copies it."""

    event: Event
    fence: Mapping[str, Any]
    fields: Mapping[str, Any] = field(default_factory=dict)
    gone: tuple[str, ...] = ()
    inc: Mapping[str, int] = field(default_factory=dict)
    public: bool = True

    @property
    def state(self) -> State | None:
        """The state the change leaves."""
        found = rule(self.fence.get("state"), self.event)
        assert found is not None
        return found.to


def decide(
    event: Event,
    source: object,
    fields: Mapping[str, Any],
    *,
    fence: Mapping[str, Any] | None = None,
    gone: Iterable[str] = (),
    inc: Mapping[str, int] | None = None,
    now: datetime | None = None,
    public: bool | None = None,
    detail: str | None = None,
) -> Change | None:
    """The change `event` makes from `source`, or None when the table refuses it. With `now`, a
    public change is a new revision: `updated_at`, `rev` one higher, its copy not yet synced."""
    found = rule(source, event)
    if found is None:
        return None
    written = dict(fields)
    if found.reason is not None and detail is not None:
        written["error"] = Problem(found.reason, detail).as_error()
    if found.to is not None and found.to != source:
        written["state"] = found.to.value
    increments = dict(inc or {})
    public = found.public if public is None else public
    if public and now is not None:
        written.update(updated_at=now, synced=False)
        increments["rev"] = 1
    removed = [*(["state"] if found.to is None else []), *gone]
    removed = [name for name in dict.fromkeys(removed) if name not in written]
    stored = None if source is None else str(source)
    return Change(
        event, {"state": stored, **(fence or {})}, written, tuple(removed), increments, public
    )


def cancel_event(doc: Mapping[str, Any]) -> Event:
    """A broadcast request (it has an `audience`) can also be cancelled while it fans out."""
    return Event.CANCEL_BROADCAST if "audience" in doc else Event.CANCEL


def next_rev(last: object) -> int:
    """The revision after the status copy's `last`, counting from 0 when that is not a sane
    counter: a write that must succeed sets its revision rather than increment a broken one."""
    sane = isinstance(last, int) and not isinstance(last, bool) and last < 2**62
    return (last if sane else 0) + 1  # type: ignore[operator]


def holds(doc: Mapping[str, Any], change: Change) -> bool:
    """Whether `doc` still holds the fence of `change`, as the server's filter would match it
    (a missing field matches None)."""
    return all(doc.get(name) == value for name, value in change.fence.items())


def apply(doc: Doc, change: Change) -> None:
    """Write `change` into `doc` in place, as the server would."""
    doc.update(change.fields)
    for name in change.gone:
        doc.pop(name, None)
    for name, step in change.inc.items():
        doc[name] = (doc.get(name) or 0) + step


def applied(doc: Mapping[str, Any], change: Change) -> Doc:
    """`doc` as `change` leaves it, without touching `doc`."""
    new = dict(doc)
    apply(new, change)
    return new
