"""What each event of the transition table (jobs/rules/transitions.py) writes: the change,
built from the document as the caller read it, or None when the table refuses it. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from jobs.model import CLAIM_FIELDS, STATUS_FIELDS, Problem, State
from jobs.rules import replay
from jobs.rules.intake import Admission
from jobs.rules.transitions import FINISH, Change, Event, cancel_event, decide, next_rev

Doc = dict[str, Any]


def _claim(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"claim_token": doc["claim_token"]}


def _read(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"rev": doc["rev"]} if "rev" in doc else {}


def admitted(admission: Admission, now: datetime) -> Change:
    """Admission's write: the first state (queued, or rejected with its reason), the normalised
    fields, the seal, and the fields intake strips removed."""
    fields: Doc = {"created_at": now, "updated_at": now, "rev": 1, "synced": False}
    fields["kind"] = "broadcast" if admission.broadcast else "message"
    if admission.seal is not None:
        fields["seal"] = admission.seal
    if admission.problem is None:
        fields.update(admission.fields)
    else:
        fields["error"] = admission.problem.as_error()
    event = Event.ADMIT if admission.problem is None else Event.REFUSE
    made = decide(event, None, fields, gone=admission.strip)
    assert made is not None
    return made


def claimed(now: datetime, lease: timedelta, token: str) -> Change:
    """A claim's write: `sending` under a fresh token, a lease, one more attempt."""
    fields = {"claim_token": token, "lease_until": now + lease, "in_flight": False}
    made = decide(Event.CLAIM, State.QUEUED, fields, inc={"attempts": 1}, now=now)
    assert made is not None
    return made


def renewed(
    doc: Mapping[str, Any],
    now: datetime,
    lease: timedelta,
    *,
    in_flight: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Change | None:
    """The lease extended (`in_flight`: the send begins). Private, unless `extra` holds a
    field the status shows."""
    fields = {"lease_until": now + lease, "in_flight": in_flight, **(extra or {})}
    public = any(name in STATUS_FIELDS for name in extra or {})
    event = Event.SEND_BEGUN if in_flight else Event.RENEW
    return decide(event, State.SENDING, fields, fence=_claim(doc), now=now, public=public)


def finished(
    doc: Mapping[str, Any],
    state: State,
    now: datetime,
    *,
    problem: Problem | None = None,
    provider_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Change | None:
    """A claim's terminal outcome: its token kept as `last_claim_token`, the claim removed."""
    if state not in FINISH:
        raise ValueError(f"{state} does not end a claim")
    fields: Doc = {"last_claim_token": doc["claim_token"], **(extra or {})}
    if problem is not None:
        fields["error"] = problem.as_error()
    if provider_id is not None:
        fields["provider_id"] = provider_id
    gone = list(CLAIM_FIELDS)
    if state is State.SENT:
        fields["sent_at"] = now
    if state in (State.SENT, State.EXPANDED):
        # What an earlier attempt ran into (a retried send, a fan-out whose daemon died) is
        # over once it succeeded: a stale `lease_expired` would read as a fault.
        gone.append("error")
    return decide(FINISH[state], State.SENDING, fields, fence=_claim(doc), gone=gone, now=now)


def retried_later(
    doc: Mapping[str, Any],
    now: datetime,
    due_at: datetime,
    problem: Problem,
    *,
    refund: bool = False,
) -> Change | None:
    """A claimed message queued again until `due_at`; `refund` un-counts its attempt."""
    fields = {"due_at": due_at, "error": problem.as_error()}
    gone = ("claim_token", "lease_until")
    inc = {"attempts": -1} if refund else {}
    return decide(
        Event.RETRY_LATER, State.SENDING, fields, fence=_claim(doc), gone=gone, inc=inc, now=now
    )


def released(doc: Mapping[str, Any], now: datetime, *, keep_place: bool = False) -> Change | None:
    """A claimed, unsent message handed back: due now (or when it was due, with `keep_place`,
    so it keeps its turn), its attempt refunded."""
    fields = {"due_at": (doc.get("due_at") if keep_place else None) or now}
    return decide(
        Event.RELEASE, State.SENDING, fields,
        fence=_claim(doc), gone=CLAIM_FIELDS, inc={"attempts": -1}, now=now,
    )  # fmt: skip


def late_success(doc: Mapping[str, Any], now: datetime, provider_id: str) -> Change | None:
    """The `unknown` the expired lease of `doc`'s claim left, upgraded to `sent`."""
    fields = {"provider_id": provider_id, "sent_at": now}
    fence = {"last_claim_token": doc["claim_token"]}
    return decide(Event.LATE_SUCCESS, State.UNKNOWN, fields, fence=fence, gone=["error"], now=now)


def cancelled(doc: Mapping[str, Any], by: str, now: datetime) -> Change | None:
    """An operator's cancel of `doc` as read, fenced on its revision: who and when, and the
    reason. `{"state": "queued"}` stands for every queued message of a broadcast."""
    fields = {"cancelled": {"by": by, "at": now}}
    return decide(
        cancel_event(doc), doc.get("state"), fields,
        fence=_read(doc), gone=CLAIM_FIELDS, now=now, detail=f"cancelled by {by}",
    )  # fmt: skip


def requeued(doc: Mapping[str, Any], by: str, now: datetime) -> Change | None:
    """An operator's retry of a failed or unknown message as read: queued now with its attempts
    reset, its earlier outcome appended to `history`. The claim checks consent and the
    signature again."""
    earlier = {
        "state": doc.get("state"),
        "error": doc.get("error"),
        "attempts": doc.get("attempts"),
        "at": doc.get("updated_at"),
        "retried_by": by,
        "retried_at": now,
    }
    history = doc.get("history")
    past = list(history) if isinstance(history, list) else []
    fields = {"due_at": now, "attempts": 0, "history": [*past, earlier]}
    gone = ("error", "provider_id", "last_claim_token", "sent_at")
    return decide(Event.RETRY, doc.get("state"), fields, fence=_read(doc), gone=gone, now=now)


def set_aside(
    expected: Mapping[str, Any],
    last_rev: object,
    detail: str,
    now: datetime,
    *,
    drop: Iterable[str] = (),
) -> Change | None:
    """A document rejected as `invalid_document` with `detail`, if it still holds `expected`;
    its revision follows its status copy's `last_rev`, `drop` names fields removed to make
    room."""
    fields = {"rev": next_rev(last_rev), "updated_at": now, "synced": False}
    gone = ("claim_token", "lease_until", "in_flight", "due_at", *drop)
    return decide(
        Event.SET_ASIDE, expected.get("state"), fields, fence=expected, gone=gone, detail=detail
    )


def reintake(doc: Mapping[str, Any]) -> Change | None:
    """A document without the daemon's seal made a new producer document again, fenced on the
    state and claim token it was read with: its state and every daemon-owned field removed."""
    gone = sorted(replay.DAEMON_FIELDS & doc.keys())
    fence = {"claim_token": doc.get("claim_token")}
    return decide(Event.REINTAKE, doc.get("state"), {}, fence=fence, gone=gone)
