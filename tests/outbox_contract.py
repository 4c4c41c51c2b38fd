"""The outbox store's contract (jobs/ports/outbox.py), as tests any implementation must pass.

A test module subclasses `OutboxContract` and provides an `outbox` fixture; the in-memory
outbox, the MongoDB store on mongomock and the MongoDB store on the real server all do.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jobs.doubles.clock import ManualClock
from jobs.errors import DuplicateKey
from jobs.model import Problem, Reason, State
from jobs.ports import Outbox, Outcome, SendRefused, SendTicket
from jobs.rules import intake, replies

LEASE = timedelta(seconds=120)
PROBLEM = Problem(Reason.PROVIDER, "503: down")
RECIPIENT = "13125550199"


class OutboxContract:
    """What every outbox store promises; see the `Outbox` protocol."""

    def queue(self, outbox: Outbox, clock: ManualClock, **fields: Any) -> Any:
        doc = {"user": "alice", "to": RECIPIENT, "body": "hello", **fields}
        doc_id = outbox.insert(doc)
        assert outbox.admit(doc_id, intake.admit(doc, clock.now())) is not None
        return doc_id

    def stored(self, outbox: Outbox, doc_id: Any) -> dict[str, Any]:
        found = outbox.find(doc_id)
        assert found is not None
        return found

    def public(self, outbox: Outbox, doc_id: Any) -> dict[str, Any]:
        found = outbox.projected(doc_id)
        assert found is not None
        return found

    def test_a_new_document_is_admitted_once(self, outbox: Outbox, clock: ManualClock) -> None:
        doc = {"user": "alice", "to": RECIPIENT, "body": "hello"}
        doc_id = outbox.insert(doc)
        assert [d["_id"] for d in outbox.new_documents(10)] == [doc_id]

        first = outbox.admit(doc_id, intake.admit(doc, clock.now()))
        again = outbox.admit(doc_id, intake.admit(doc, clock.now()))

        assert first is not None and again is None
        assert (first["state"], first["rev"], first["due_at"]) == ("queued", 1, clock.now())
        assert outbox.new_documents(10) == []
        assert (self.public(outbox, doc_id)["state"], self.public(outbox, doc_id)["rev"]) == (
            "queued",
            1,
        )

    def test_a_key_is_inserted_once_and_found_by_it(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        first = self.queue(outbox, clock, key="order-1")

        with pytest.raises(DuplicateKey):
            outbox.insert({"user": "alice", "to": RECIPIENT, "body": "again", "key": "order-1"})

        found = outbox.find_by_key("order-1", "alice")
        assert found is not None and found["_id"] == first

    def test_keys_are_scoped_per_user_so_nobody_squats_another_s(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        squat = outbox.insert({"user": "mallory", "to": RECIPIENT, "body": "x", "key": "order-1"})

        mine = self.queue(outbox, clock, key="order-1")

        assert mine != squat
        assert outbox.find_by_key("order-1", "alice")["_id"] == mine  # type: ignore[index]
        assert outbox.find_by_key("order-1", "mallory")["_id"] == squat  # type: ignore[index]

    def test_claim_takes_the_highest_priority_then_the_earliest_due(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        late = self.queue(outbox, clock, body="late")
        clock.advance(1)
        later = self.queue(outbox, clock, body="later")
        urgent = self.queue(outbox, clock, body="urgent", priority=5)
        future = self.queue(outbox, clock, body="future", send_at=clock.now() + timedelta(hours=1))

        claimed = [doc["_id"] for doc in outbox.claim(10, LEASE)]

        assert claimed == [urgent, late, later]
        assert future not in claimed
        assert outbox.claim(10, LEASE) == []

    def test_at_equal_priority_users_take_turns(self, outbox: Outbox, clock: ManualClock) -> None:
        mass = [self.queue(outbox, clock, body=f"mass {i}") for i in range(3)]
        clock.advance(1)
        single = self.queue(outbox, clock, user="bob", body="just one")

        first = [doc["_id"] for doc in outbox.claim(2, LEASE)]
        rest = [doc["_id"] for doc in outbox.claim(10, LEASE)]

        assert first == [mass[0], single], "bob waited behind every message alice queued first"
        assert rest == mass[1:]

    def test_replies_go_first_whatever_priority_producers_use(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        urgent = self.queue(outbox, clock, body="urgent", priority=100)
        clock.advance(1)
        reply = {
            "_id": f"reply:stop:in-1:{RECIPIENT}", "kind": "message", "user": replies.USER,
            "to": RECIPIENT, "body": "You are unsubscribed.", "campaign": "reply:stop:in-1",
            "priority": 0, "due_at": clock.now(), "state": "queued", "attempts": 0, "rev": 1,
            "synced": False, "created_at": clock.now(), "updated_at": clock.now(),
        }  # fmt: skip
        outbox.add_children([reply])

        claimed = [doc["_id"] for doc in outbox.claim(10, LEASE)]

        assert claimed == [reply["_id"], urgent]

    def test_a_claim_gives_a_fresh_token_a_lease_and_counts_the_attempt(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        doc_id = self.queue(outbox, clock)

        [doc] = outbox.claim(1, LEASE)

        assert doc["_id"] == doc_id
        assert (doc["state"], doc["attempts"], doc["rev"], doc["in_flight"]) == (
            "sending",
            1,
            2,
            False,
        )
        assert doc["lease_until"] == clock.now() + LEASE
        assert isinstance(doc["claim_token"], str) and doc["claim_token"]
        assert self.public(outbox, doc_id)["state"] == "sending"

    def test_writes_after_a_claim_are_fenced_on_its_token(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        stale = {**doc, "claim_token": "a worker whose lease expired"}

        assert outbox.renew(stale, LEASE, in_flight=True) is None
        assert outbox.finish(stale, State.SENT, provider_id="mdr2-x") is None
        assert outbox.retry_later(stale, clock.now(), PROBLEM) is None
        assert outbox.release(stale) is None
        assert self.stored(outbox, doc_id)["rev"] == doc["rev"]

        done = outbox.finish(doc, State.SENT, provider_id="mdr2-1")
        assert done is not None
        assert outbox.finish(doc, State.FAILED, problem=PROBLEM) is None, "the claim is over"

    def test_an_event_the_transition_table_refuses_writes_nothing(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        failed = outbox.finish(doc, State.FAILED, problem=PROBLEM)
        assert failed is not None

        assert outbox.record_late_success(doc, "mdr2-1") is None, "failed, not unknown"
        # The document holds what the caller expects: the table alone refuses this one.
        assert outbox.set_aside(doc_id, {"state": "failed"}, "too late to set aside") is None

        assert self.stored(outbox, doc_id)["rev"] == failed["rev"]
        assert (self.public(outbox, doc_id)["state"], self.public(outbox, doc_id)["rev"]) == (
            "failed",
            failed["rev"],
        )

    def test_finish_records_the_outcome_and_ends_the_claim(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        outbox.retry_later(doc, clock.now(), PROBLEM)
        [doc] = outbox.claim(1, LEASE)

        done = outbox.finish(doc, State.SENT, provider_id="mdr2-1", extra={"from": "12065550100"})

        assert done is not None
        assert (done["state"], done["provider_id"], done["sent_at"]) == (
            "sent",
            "mdr2-1",
            clock.now(),
        )
        assert done["last_claim_token"] == doc["claim_token"]
        assert not {"claim_token", "lease_until", "in_flight", "error"} & set(done)
        public = self.public(outbox, doc_id)
        assert (public["state"], public["rev"], public["from"]) == (
            "sent",
            done["rev"],
            "12065550100",
        )
        assert "error" not in public

    def test_renew_extends_the_lease_and_marks_the_send_in_flight(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        clock.advance(30)

        renewed = outbox.renew(doc, LEASE, in_flight=True, extra={"recipients": 3})

        assert renewed is not None
        assert (renewed["lease_until"], renewed["in_flight"], renewed["recipients"]) == (
            clock.now() + LEASE,
            True,
            3,
        )
        assert renewed["rev"] == doc["rev"] + 1

    def test_retry_later_queues_again_and_may_refund_the_attempt(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        due = clock.now() + timedelta(minutes=5)

        again = outbox.retry_later(doc, due, PROBLEM, refund=True)

        assert again is not None
        assert (again["state"], again["due_at"], again["attempts"]) == ("queued", due, 0)
        assert again["error"] == PROBLEM.as_error()
        assert "claim_token" not in again
        assert outbox.claim(1, LEASE) == []
        clock.advance(300)
        assert [d["_id"] for d in outbox.claim(1, LEASE)] == [doc_id]

    def test_release_hands_the_message_back_due_now_with_its_attempt_refunded(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        outbox.renew(doc, LEASE, in_flight=True)

        released = outbox.release(doc)

        assert released is not None
        assert (released["state"], released["due_at"], released["attempts"]) == (
            "queued",
            clock.now(),
            0,
        )
        assert not {"claim_token", "lease_until", "in_flight"} & set(released)

    def test_begin_send_marks_the_claim_in_flight_and_opens_its_send(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        clock.advance(30)

        ticket = outbox.begin_send(doc, LEASE)

        assert isinstance(ticket, SendTicket)
        assert (ticket.message_id, ticket.spent_id, ticket.claim) == (
            doc_id,
            str(doc_id),
            doc["claim_token"],
        )
        stored = self.stored(outbox, doc_id)
        assert (stored["in_flight"], stored["lease_until"]) == (True, clock.now() + LEASE)
        assert stored["ticket"] == ticket.token
        assert stored["rev"] == doc["rev"], "a private change"

    def test_a_claim_that_ended_begins_no_send(self, outbox: Outbox, clock: ManualClock) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        outbox.release(doc)

        refused = outbox.begin_send(doc, LEASE)

        assert isinstance(refused, SendRefused)
        assert refused.lost is not None and refused.replay_of is None
        assert "in_flight" not in self.stored(outbox, doc_id)

    @pytest.mark.parametrize("outcome", [Outcome.SENT, Outcome.IN_DOUBT])
    def test_a_request_that_may_have_left_keeps_its_id_spent(
        self, outbox: Outbox, clock: ManualClock, outcome: Outcome
    ) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        ticket = outbox.begin_send(doc, LEASE)
        assert isinstance(ticket, SendTicket)
        outbox.finish_send(ticket, outcome, "mdr2-1" if outcome is Outcome.SENT else None)
        outbox.spent.flush()
        outbox.release(doc)
        [again] = outbox.claim(1, LEASE)

        refused = outbox.begin_send(again, LEASE)

        assert refused == SendRefused(replay_of=str(doc_id))

    def test_a_request_known_not_to_have_left_frees_its_id_for_the_next_claim(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        ticket = outbox.begin_send(doc, LEASE)
        assert isinstance(ticket, SendTicket)
        outbox.finish_send(ticket, Outcome.NOT_SENT)
        outbox.finish_send(ticket, Outcome.NOT_SENT)  # a write retried through an outage
        outbox.release(doc)
        [again] = outbox.claim(1, LEASE)

        reopened = outbox.begin_send(again, LEASE)

        assert isinstance(reopened, SendTicket)
        assert reopened.claim == again["claim_token"] != ticket.claim

    def test_expired_leases_are_listed_for_recovery(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        first = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        clock.advance(60)
        self.queue(outbox, clock)
        outbox.claim(1, LEASE)

        assert outbox.expired_leases(10) == []
        clock.advance(LEASE.total_seconds() - 60)
        assert [d["_id"] for d in outbox.expired_leases(10)] == [first]
        assert outbox.expired_leases(10)[0]["claim_token"] == doc["claim_token"]

    def test_a_late_success_upgrades_only_the_unknown_its_own_claim_left(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        stranger = {**doc, "claim_token": "someone else"}
        assert outbox.record_late_success(doc, "mdr2-1") is None, "still sending: not unknown"
        outbox.finish(doc, State.UNKNOWN, problem=Problem(Reason.LEASE_EXPIRED, "expired"))

        assert outbox.record_late_success(stranger, "mdr2-1") is None
        late = outbox.record_late_success(doc, "mdr2-1")

        assert late is not None
        assert (late["state"], late["provider_id"]) == ("sent", "mdr2-1")
        assert "error" not in late
        assert self.public(outbox, doc_id)["state"] == "sent"

    def test_children_already_inserted_are_skipped(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        now = clock.now()
        base: dict[str, Any] = {"kind": "message", "user": "alice", "body": "news"}
        base["campaign"] = "c1"
        base.update(state="queued", due_at=now, attempts=0, rev=1, priority=0)
        children = [{"_id": f"c1:{n}", "to": n, **base} for n in ("13125550111", "13125550122")]

        first = outbox.add_children(children[:1])
        second = outbox.add_children(children)

        assert [c["_id"] for c in first] == ["c1:13125550111"]
        assert [c["_id"] for c in second] == ["c1:13125550122"]
        assert self.public(outbox, "c1:13125550122")["state"] == "queued"
        assert len(outbox.claim(10, LEASE)) == 2

    def test_a_document_whose_counters_were_overwritten_is_rejected_not_claimed(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        fields = {"user": "alice", "to": RECIPIENT, "body": "x", "state": "queued", "rev": 1}
        bad = outbox.insert({**fields, "attempts": "many", "due_at": clock.now(), "priority": 9})
        good = self.queue(outbox, clock)

        claimed = [doc["_id"] for doc in outbox.claim(10, LEASE)]

        assert claimed == [good]
        rejected = self.stored(outbox, bad)
        assert (rejected["state"], rejected["error"]["code"]) == ("rejected", "invalid_document")
        assert self.public(outbox, bad)["state"] == "rejected"

    def test_every_public_change_is_copied_at_its_revision_and_private_ones_are_not(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        doc_id = self.queue(outbox, clock)
        [doc] = outbox.claim(1, LEASE)
        assert (self.public(outbox, doc_id)["state"], self.public(outbox, doc_id)["rev"]) == (
            "sending",
            2,
        )
        clock.advance(1)

        renewed = outbox.renew(doc, LEASE, in_flight=True)

        assert renewed is not None
        assert (renewed["rev"], renewed["in_flight"]) == (2, True), "a private change"
        assert self.stored(outbox, doc_id)["in_flight"] is True
        public = self.public(outbox, doc_id)
        assert (public["rev"], public["updated_at"]) == (2, doc["updated_at"])
        assert "in_flight" not in public and "lease_until" not in public

        done = outbox.finish(doc, State.SENT, provider_id="mdr2-1")
        assert done is not None and done["rev"] == 3
        outbox.mark_synced()
        outbox.resync(limit=100)

        assert (self.public(outbox, doc_id)["state"], self.public(outbox, doc_id)["rev"]) == (
            "sent",
            3,
        )
        assert "body" not in self.public(outbox, doc_id)
