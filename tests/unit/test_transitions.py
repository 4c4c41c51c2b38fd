"""The transition table: every allowed (state, event) pair leads where the table says and
writes what it says; every other pair is refused, by the table or by the fence it names, the
same way for both stores (which write only a change that `holds` on the stored document)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.model import Problem, Reason, State
from jobs.mongo import writes
from jobs.rules import changes, interventions, transitions
from jobs.rules.intake import Admission
from jobs.rules.transitions import TABLE, Change, Event, Fence

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
LEASE = timedelta(seconds=120)
PROBLEM = Problem(Reason.PROVIDER, "503: down")
STATES: list[State | None] = [None, *State]

Doc = dict[str, Any]
Build = Callable[[Doc], Change | None]


def stored(state: State | None) -> Doc:
    """A document in `state` as the outbox holds it, read by the caller of every write: its
    claim token is also the last one, so a fence on either holds."""
    doc: Doc = {"_id": "m1", "user": "alice", "to": "13125550199", "rev": 4, "attempts": 1}
    doc.update(claim_token="t1", last_claim_token="t1", lease_until=NOW, in_flight=False)
    doc["due_at"] = NOW - timedelta(minutes=1)
    if state is not None:
        doc["state"] = state.value
    return doc


BUILD: Mapping[Event, Build] = {
    Event.ADMIT: lambda doc: changes.admitted(Admission(fields={"to": "13125550199"}), NOW),
    Event.REFUSE: lambda doc: changes.admitted(Admission(problem=PROBLEM), NOW),
    Event.CLAIM: lambda doc: changes.claimed(NOW, LEASE, "t2"),
    Event.RENEW: lambda doc: changes.renewed(doc, NOW, LEASE),
    Event.SEND_BEGUN: lambda doc: changes.renewed(doc, NOW, LEASE, in_flight=True),
    Event.FINISH_SENT: lambda doc: changes.finished(doc, State.SENT, NOW, provider_id="mdr2-1"),
    Event.FINISH_FAILED: lambda doc: changes.finished(doc, State.FAILED, NOW, problem=PROBLEM),
    Event.FINISH_REJECTED: lambda doc: changes.finished(doc, State.REJECTED, NOW, problem=PROBLEM),
    Event.FINISH_UNKNOWN: lambda doc: changes.finished(doc, State.UNKNOWN, NOW, problem=PROBLEM),
    Event.FINISH_EXPANDED: lambda doc: changes.finished(doc, State.EXPANDED, NOW),
    Event.RETRY_LATER: lambda doc: changes.retried_later(doc, NOW, NOW, PROBLEM, refund=True),
    Event.RELEASE: lambda doc: changes.released(doc, NOW),
    Event.LATE_SUCCESS: lambda doc: changes.late_success(doc, NOW, "mdr2-1"),
    Event.CANCEL: lambda doc: changes.cancelled(doc, "ops", NOW),
    Event.CANCEL_BROADCAST: lambda doc: changes.cancelled({**doc, "audience": "all"}, "ops", NOW),
    Event.RETRY: lambda doc: changes.requeued(doc, "ops", NOW),
    Event.SET_ASIDE: lambda doc: changes.set_aside({"state": doc.get("state")}, 4, "bad", NOW),
    Event.REINTAKE: lambda doc: changes.reintake(doc),
}
ALLOWED = sorted(TABLE, key=str)
REFUSED = [(s, e) for s in STATES for e in Event if (s, e) not in TABLE]


Q, S, U = State.QUEUED, State.SENDING, State.UNKNOWN
# Where each event may happen and where it leads, written out apart from the table.
EXPECTED: Mapping[Event, tuple[tuple[State | None, ...], State | None]] = {
    Event.ADMIT: ((None,), Q),
    Event.REFUSE: ((None,), State.REJECTED),
    Event.CLAIM: ((Q,), S),
    Event.RENEW: ((S,), S),
    Event.SEND_BEGUN: ((S,), S),
    Event.FINISH_SENT: ((S,), State.SENT),
    Event.FINISH_FAILED: ((S,), State.FAILED),
    Event.FINISH_REJECTED: ((S,), State.REJECTED),
    Event.FINISH_UNKNOWN: ((S,), U),
    Event.FINISH_EXPANDED: ((S,), State.EXPANDED),
    Event.RETRY_LATER: ((S,), Q),
    Event.RELEASE: ((S,), Q),
    Event.LATE_SUCCESS: ((U,), State.SENT),
    Event.CANCEL: ((None, Q), State.CANCELLED),
    Event.CANCEL_BROADCAST: ((None, Q, S), State.CANCELLED),
    Event.RETRY: ((State.FAILED, U), Q),
    Event.SET_ASIDE: ((None, Q, S, State.SENT, U), State.REJECTED),
    Event.REINTAKE: (tuple(State), None),
}


def test_the_table_is_the_state_machine_written_out() -> None:
    table = {(s, e): rule.to for (s, e), rule in TABLE.items()}

    assert table == {(s, e): to for e, (froms, to) in EXPECTED.items() for s in froms}


def test_every_event_has_a_row_and_a_change() -> None:
    assert {event for _, event in TABLE} == set(Event) == set(BUILD)


@pytest.mark.parametrize(("state", "event"), ALLOWED)
def test_an_allowed_event_leads_where_the_table_says(state: State | None, event: Event) -> None:
    rule = TABLE[(state, event)]
    doc = stored(state)

    change = BUILD[event](doc)

    assert change is not None and change.event is event
    assert transitions.holds(doc, change), "the write would miss the document it is for"
    after = transitions.applied(doc, change)
    assert after.get("state") == (rule.to.value if rule.to is not None else None)
    assert change.state == rule.to
    if rule.reason is not None:
        assert after["error"]["code"] == rule.reason
    if rule.fence is Fence.CLAIM:
        assert change.fence == {"state": "sending", "claim_token": "t1"}


@pytest.mark.parametrize(("state", "event"), ALLOWED)
def test_a_public_change_is_a_new_revision_and_a_private_one_is_not(
    state: State | None, event: Event
) -> None:
    doc = stored(state)
    change = BUILD[event](doc)
    assert change is not None

    after = transitions.applied(doc, change)

    assert change.public is TABLE[(state, event)].public
    if event in (Event.ADMIT, Event.REFUSE):
        assert (after["rev"], after["synced"]) == (1, False)
    elif event is Event.SET_ASIDE:
        assert (after["rev"], after["synced"]) == (5, False), "set after the status copy's 4"
    elif change.public:
        assert (after["rev"], after["updated_at"], after["synced"]) == (5, NOW, False)
    else:
        assert "rev" not in change.inc and not {"updated_at", "synced"} & set(change.fields)


@pytest.mark.parametrize(("state", "event"), REFUSED)
def test_an_event_the_table_does_not_list_is_refused(state: State | None, event: Event) -> None:
    doc = stored(state)

    change = BUILD[event](doc)

    assert not transitions.allows(state, event)
    # Refused outright, or fenced on the one state the table allows, which the document is not in.
    assert change is None or not transitions.holds(doc, change)


@pytest.mark.parametrize("value", ["bogus", 5, {"$ne": None}, ["queued"], True])
def test_a_state_that_is_not_one_allows_nothing(value: object) -> None:
    doc = {**stored(None), "state": value}

    assert not any(transitions.allows(value, event) for event in Event)
    assert changes.cancelled(doc, "ops", NOW) is None
    assert changes.reintake(doc) is None
    assert changes.set_aside({"state": value}, 1, "bad", NOW) is None


def test_only_a_claim_s_terminal_states_finish_it() -> None:
    with pytest.raises(ValueError, match="queued"):
        changes.finished(stored(State.SENDING), State.QUEUED, NOW)


def test_a_stale_claim_token_misses_the_fence() -> None:
    doc = stored(State.SENDING)
    stale = {**doc, "claim_token": "a worker whose lease expired"}

    change = changes.finished(stale, State.SENT, NOW, provider_id="mdr2-1")

    assert change is not None and not transitions.holds(doc, change)


def test_a_late_success_is_fenced_on_the_claim_that_left_it_unknown() -> None:
    doc = stored(State.UNKNOWN)
    mine = changes.late_success({"_id": "m1", "claim_token": "t1"}, NOW, "mdr2-1")
    theirs = changes.late_success({"_id": "m1", "claim_token": "t0"}, NOW, "mdr2-1")

    assert mine is not None and transitions.holds(doc, mine)
    assert theirs is not None and not transitions.holds(doc, theirs)
    assert "error" in mine.gone


def test_an_operator_s_write_is_fenced_on_the_revision_read() -> None:
    doc = stored(State.QUEUED)
    change = changes.cancelled(doc, "ops", NOW)
    assert change is not None

    assert not transitions.holds({**doc, "rev": 5}, change), "changed since it was read"
    assert change.fields["cancelled"] == {"by": "ops", "at": NOW}
    assert set(change.gone) == {"claim_token", "lease_until", "in_flight"}


def test_a_broadcast_request_may_be_cancelled_while_it_fans_out_and_a_message_may_not() -> None:
    sending = stored(State.SENDING)

    assert not interventions.may_cancel(sending)
    assert interventions.may_cancel({**sending, "audience": "verified"})
    assert interventions.RETRYABLE == ("failed", "unknown")


def test_retry_keeps_the_earlier_outcome_in_history_and_clears_it() -> None:
    doc = {**stored(State.FAILED), "error": PROBLEM.as_error(), "history": [{"state": "unknown"}]}

    change = changes.requeued(doc, "ops", NOW)

    assert change is not None
    assert change.fields["history"][-1]["error"] == PROBLEM.as_error()
    assert len(change.fields["history"]) == 2
    assert {"error", "provider_id", "last_claim_token", "sent_at"} <= set(change.gone)


def test_a_field_set_is_never_also_removed() -> None:
    change = changes.set_aside({"state": "queued"}, 2, "bad", NOW, drop=["error", "body", "rev"])

    assert change is not None
    assert "body" in change.gone and not set(change.gone) & set(change.fields)


@pytest.mark.parametrize(("last", "rev"), [(4, 5), (None, 1), ("x", 1), (True, 1), (2**62, 1)])
def test_a_set_aside_revision_follows_a_sane_status_copy_only(last: object, rev: int) -> None:
    assert transitions.next_rev(last) == rev


def test_renewing_is_private_unless_it_changes_what_the_status_shows() -> None:
    doc = stored(State.SENDING)

    private = changes.renewed(doc, NOW, LEASE, extra={"ticket": "m1:4"})
    public = changes.renewed(doc, NOW, LEASE, extra={"recipients": 3})

    assert private is not None and not private.public and "rev" not in private.inc
    assert public is not None and public.public and public.inc == {"rev": 1}


def test_on_mongodb_a_change_is_a_filter_and_no_empty_operator() -> None:
    doc = stored(State.SENDING)
    change = changes.reintake(doc)
    assert change is not None

    assert writes.fence("m1", change) == {"_id": "m1", "state": "sending", "claim_token": "t1"}
    assert set(writes.update(change)) == {"$unset"}
    assert "state" in writes.update(change)["$unset"]
