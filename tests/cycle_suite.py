"""The send cycle's tests: admit, claim, check, send and record, against a fake provider.
tests/unit/test_cycle.py runs them on mongomock, tests/integration/test_store_on_server.py on
the real server; each brings its own `db` fixture."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pymongo.database import Database
from pymongo.errors import OperationFailure

from jobs import producer
from jobs.dispatch import fanout, sender
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.errors import (
    OptedOutError,
    RetryableError,
    StoreRefused,
    ThrottledError,
    UnknownOutcomeError,
)
from jobs.model import State
from jobs.mongo import status as status_queries
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from tests.unit.fakes import (
    LEASE,
    MAX_ATTEMPTS,
    OTHER_SENDER,
    RECIPIENT,
    RECIPIENT_2,
    SENDER,
    UNKNOWN,
    UNVERIFIED,
    CountingPacer,
    FakeProvider,
)
from tests.unit.fixtures import GUARDS, guarded_store
from tests.unit.helpers import broadcast, error_code, outbox, status, submit

MORE_VERIFIED = ["13125550111", "13125550122", "13125550133"]


def verified(store: OutboxStore, directory: Directory, clock: ManualClock) -> list[str]:
    for number in MORE_VERIFIED:
        directory.add(number, verified=True, now=clock.now())
    return sorted([RECIPIENT, RECIPIENT_2, *MORE_VERIFIED])


def pause_fanout_after_first_chunk(
    monkeypatch: pytest.MonkeyPatch,
    dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    clock: ManualClock,
) -> tuple[list[str], Any]:
    """A broadcast to five recipients whose fan-out stops (as at shutdown) after two of them."""
    monkeypatch.setattr(fanout, "CHUNK", 2)
    numbers = verified(store, directory, clock)
    campaign = broadcast(store)
    dispatcher.admit()
    [parent] = store.claim(1, LEASE)
    checks = itertools.count()
    state = fanout.expand(
        store,
        directory,
        clock,
        DispatchConfig(lease_seconds=LEASE.total_seconds()),
        parent,
        lambda: next(checks) > 0,
    )
    assert state == "queued"
    return numbers, campaign


class CycleSuite:
    """The send cycle's tests; a test module subclasses this with its own `db`."""

    @pytest.fixture(params=GUARDS)
    def store(
        self, db: Database[Doc], clock: ManualClock, request: pytest.FixtureRequest
    ) -> OutboxStore:
        """The store under each send guard; every fixture built on `store` follows it."""
        return guarded_store(db, clock, request.param)

    def test_queued_message_is_sent_and_recorded(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        provider: FakeProvider,
        pacer: CountingPacer,
    ) -> None:
        doc_id = submit(store, to="(312) 555-0199")

        report = dispatcher.run_once()

        assert (report.admitted, report.claimed, report.outcomes) == (1, 1, {"sent": 1})
        assert provider.calls == [(RECIPIENT, SENDER, "hello")]
        [provider_id] = provider.accepted
        projected = status(store, doc_id)
        assert (projected["state"], projected["provider_id"]) == ("sent", provider_id)
        assert (projected["from"], projected["attempts"], projected["to"]) == (SENDER, 1, RECIPIENT)
        assert pacer.acquired == 1
        assert dispatcher.run_once().idle

    def test_requested_source_is_sent_from(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
    ) -> None:
        doc_id = submit(store, **{"from": "+1 206 555 0101"})

        dispatcher.run_once()

        assert provider.calls == [(RECIPIENT, OTHER_SENDER, "hello")]
        assert status(store, doc_id)["from"] == OTHER_SENDER

    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            ({"user": "mallory"}, "not_authorized"),
            ({"to": UNVERIFIED}, "not_verified"),
            ({"to": UNKNOWN}, "not_verified"),
            ({"from": "12065550199"}, "source_not_granted"),
        ],
    )
    def test_message_that_policy_forbids_is_rejected_without_sending(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        provider: FakeProvider,
        pacer: CountingPacer,
        fields: dict[str, Any],
        reason: str,
    ) -> None:
        doc_id = submit(store, **fields)

        report = dispatcher.run_once()

        assert report.outcomes == {"rejected": 1}
        assert status(store, doc_id)["state"] == "rejected"
        assert error_code(store, doc_id) == reason
        assert provider.calls == []
        assert pacer.acquired == 0

    def test_message_to_opted_out_recipient_is_rejected_without_sending(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        directory.opt_out(RECIPIENT, now=clock.now(), reason="STOP")
        doc_id = submit(store)

        dispatcher.run_once()

        assert (status(store, doc_id)["state"], error_code(store, doc_id)) == (
            "rejected",
            "opted_out",
        )
        assert provider.calls == []

    def test_malformed_documents_are_rejected_while_valid_ones_are_sent(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
    ) -> None:
        first = submit(store, body="first")
        cases: list[tuple[dict[str, Any], str]] = [
            ({"user": {"$ne": None}}, "invalid_document"),
            ({"body": {"$gt": ""}}, "invalid_document"),
            ({"body": "nul\x00here"}, "invalid_document"),
            ({"priority": "high"}, "invalid_document"),
            ({"to": "12345"}, "invalid_number"),
            ({"body": "   "}, "empty_body"),
            ({"body": "x" * 1601}, "body_too_long"),
            ({"audience": "everyone", "to": None}, "invalid_document"),
        ]
        malformed = {}
        for fields, reason in cases:
            try:
                malformed[submit(store, **fields)] = reason
            except OperationFailure:
                continue  # some servers refuse `$` keys or NUL outright: the daemon never sees them
        second = submit(store, to=RECIPIENT_2, body="second")

        report = dispatcher.run_once()

        assert report.admitted == len(malformed) + 2
        assert {doc_id: error_code(store, doc_id) for doc_id in malformed} == malformed
        assert {status(store, doc_id)["state"] for doc_id in malformed} == {"rejected"}
        assert (status(store, first)["state"], status(store, second)["state"]) == ("sent", "sent")
        assert sorted(provider.calls) == sorted(
            [(RECIPIENT, SENDER, "first"), (RECIPIENT_2, SENDER, "second")]
        )

    def test_429_requeues_with_the_attempt_refunded_and_penalises_the_pacer(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        provider: FakeProvider,
        pacer: CountingPacer,
        clock: ManualClock,
    ) -> None:
        doc_id = submit(store)
        provider.fail_next(ThrottledError("429", "Too Many Requests", 429))

        report = dispatcher.run_once()

        doc = outbox(store, doc_id)
        assert report.outcomes == {"queued": 1}
        assert (doc["state"], doc["attempts"]) == ("queued", 0)
        assert (
            clock.now() + timedelta(seconds=2.5)
            <= doc["due_at"]
            <= clock.now() + timedelta(seconds=5)
        )
        assert error_code(store, doc_id) == "provider"
        assert pacer.penalties == 1

        clock.advance(5)
        dispatcher.run_once()

        assert (status(store, doc_id)["state"], status(store, doc_id)["attempts"]) == ("sent", 1)
        assert len(provider.calls) == 2

    def test_server_errors_are_retried_then_fail_at_max_attempts(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        provider: FakeProvider,
        pacer: CountingPacer,
        clock: ManualClock,
    ) -> None:
        doc_id = submit(store)
        provider.fail_next(
            *(RetryableError("503", "maintenance", 503) for _ in range(MAX_ATTEMPTS))
        )

        states = []
        for _ in range(MAX_ATTEMPTS):
            dispatcher.run_once()
            doc = outbox(store, doc_id)
            states.append((doc["state"], doc["attempts"]))
            clock.advance(timedelta(minutes=15).total_seconds())

        assert states == [("queued", 1), ("queued", 2), ("failed", MAX_ATTEMPTS)]
        error = {"code": "provider", "detail": "503: maintenance", "provider_code": "503"}
        assert status(store, doc_id)["error"] == error
        assert pacer.penalties == 0
        assert dispatcher.run_once().idle
        assert len(provider.calls) == MAX_ATTEMPTS

    def test_server_error_then_success_is_sent_on_retry(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = submit(store)
        provider.fail_next(RetryableError("500", "oops", 500))

        dispatcher.run_once()
        assert dispatcher.run_once().claimed == 0
        clock.advance(5)
        dispatcher.run_once()

        assert (status(store, doc_id)["state"], status(store, doc_id)["attempts"]) == ("sent", 2)
        assert len(provider.calls) == 2

    def test_unknown_outcome_is_recorded_and_never_resent(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = submit(store)
        provider.fail_next(UnknownOutcomeError("timeout", "no answer within 10 s"))

        report = dispatcher.run_once()
        for _ in range(3):
            clock.advance(3600)
            dispatcher.run_once()

        assert report.outcomes == {"unknown": 1}
        assert (status(store, doc_id)["state"], error_code(store, doc_id)) == ("unknown", "timeout")
        assert len(provider.calls) == 1

    def test_1110_fails_and_opts_the_recipient_out_for_everyone(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
    ) -> None:
        doc_id = submit(store)
        provider.fail_next(OptedOutError("1110", "recipient has opted out", 400))

        dispatcher.run_once()

        assert (status(store, doc_id)["state"], error_code(store, doc_id)) == (
            "failed",
            "opted_out",
        )
        recipient = directory.recipient(RECIPIENT)
        assert recipient is not None
        assert recipient["opted_out"]["reason"] == "flowroute 1110"

        later = submit(store, **{"from": OTHER_SENDER})
        dispatcher.run_once()

        assert (status(store, later)["state"], error_code(store, later)) == (
            "rejected",
            "opted_out",
        )
        assert len(provider.calls) == 1

    def test_dead_worker_before_sending_is_queued_again_and_sent_once(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = submit(store)
        dispatcher.admit()
        [dead] = store.claim(10, LEASE)
        clock.advance(LEASE.total_seconds() + 1)

        assert dispatcher.recover() == 1

        doc = outbox(store, doc_id)
        assert (doc["state"], doc["error"]["code"], doc["due_at"]) == (
            "queued",
            "lease_expired",
            clock.now(),
        )
        report = dispatcher.run_once()
        assert (report.recovered, report.outcomes) == (0, {"sent": 1})
        assert (status(store, doc_id)["state"], status(store, doc_id)["attempts"]) == ("sent", 2)
        assert len(provider.calls) == 1
        assert outbox(store, doc_id)["last_claim_token"] != dead["claim_token"]

    def test_dead_worker_after_the_request_left_is_unknown_and_never_resent(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = submit(store)
        dispatcher.admit()
        [dead] = store.claim(10, LEASE)
        store.renew(dead, LEASE, in_flight=True)
        clock.advance(LEASE.total_seconds() + 1)

        report = dispatcher.run_once()
        clock.advance(3600)
        dispatcher.run_once()

        assert (report.recovered, report.claimed) == (1, 0)
        doc = outbox(store, doc_id)
        assert (doc["state"], doc["error"]["code"]) == ("unknown", "lease_expired")
        assert status(store, doc_id)["state"] == "unknown", status(store, doc_id)
        assert provider.calls == []

    def test_dead_worker_holding_its_last_attempt_fails_the_message(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = submit(store)
        dispatcher.admit()
        store.outbox.update_one({"_id": doc_id}, {"$set": {"attempts": MAX_ATTEMPTS - 1}})
        store.claim(10, LEASE)
        clock.advance(LEASE.total_seconds() + 1)

        dispatcher.run_once()

        assert (status(store, doc_id)["state"], error_code(store, doc_id)) == (
            "failed",
            "max_attempts",
        )
        assert provider.calls == []

    def test_live_lease_is_left_alone(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = submit(store)
        dispatcher.admit()
        [held] = store.claim(10, LEASE)
        clock.advance(LEASE.total_seconds() - 1)

        report = dispatcher.run_once()

        assert (report.recovered, report.claimed) == (0, 0)
        assert outbox(store, doc_id)["claim_token"] == held["claim_token"]
        assert provider.calls == []

    def test_send_that_outlives_its_lease_is_still_recorded_as_sent(
        self,
        make_dispatcher: Callable[..., Dispatcher],
        store: OutboxStore,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        slow, rescuer = make_dispatcher(), make_dispatcher()
        doc_id = submit(store)

        def lease_runs_out() -> None:
            clock.advance(LEASE.total_seconds() + 1)
            assert rescuer.recover() == 1

        provider.on_send = lease_runs_out
        report = slow.run_once()

        [provider_id] = provider.accepted
        assert report.outcomes == {"sent": 1}
        projected = status(store, doc_id)
        assert (projected["state"], projected["provider_id"]) == ("sent", provider_id)
        assert "error" not in projected

    @staticmethod
    def refuse_records_of_sent(
        monkeypatch: pytest.MonkeyPatch, store: OutboxStore, times: int
    ) -> None:
        """The server refuses the record of an accepted request `times` times, as a
        serialisation failure under load would."""
        finish = store.finish
        refused = itertools.count()

        def refusing(doc: Any, state: State, **fields: Any) -> Any:
            if state is State.SENT and next(refused) < times:
                raise StoreRefused("could not serialize access", 1, {"errmsg": "serialize"})
            return finish(doc, state, **fields)

        monkeypatch.setattr(store, "finish", refusing)

    def test_a_sent_message_whose_record_is_refused_once_is_recorded_as_sent(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        provider: FakeProvider,
    ) -> None:
        doc_id = submit(store)
        self.refuse_records_of_sent(monkeypatch, store, times=1)

        report = dispatcher.run_once()

        assert report.outcomes == {"sent": 1}
        assert status(store, doc_id)["state"] == "sent"
        assert len(provider.accepted) == 1

    def test_a_sent_message_is_never_rejected_for_a_record_the_server_keeps_refusing(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        doc_id = submit(store)
        self.refuse_records_of_sent(monkeypatch, store, times=sender.RECORD_REFUSALS)

        dispatcher.run_once()
        assert status(store, doc_id)["state"] == "sending", "set aside although it was sent"
        clock.advance(LEASE.total_seconds() + 1)
        dispatcher.recover()
        dispatcher.run_once()

        # Settled by recovery: sent where the send ticket kept the 202, else in doubt.
        assert status(store, doc_id)["state"] in ("sent", "unknown"), status(store, doc_id)
        assert len(provider.accepted) == 1, "sent again"

    def test_stop_mid_batch_releases_unsent_messages_with_attempts_refunded(
        self, make_dispatcher: Callable[..., Dispatcher], store: OutboxStore, provider: FakeProvider
    ) -> None:
        stopping = make_dispatcher()
        ids = [submit(store, body=f"m{i}") for i in range(4)]
        provider.on_send = stopping.stop

        report = stopping.run_once()

        assert (report.claimed, report.outcomes) == (4, {"sent": 1})
        states = {doc_id: outbox(store, doc_id) for doc_id in ids}
        [sent] = [doc for doc in states.values() if doc["state"] == "sent"]
        released = [doc for doc in states.values() if doc["state"] != "sent"]
        assert [(doc["state"], doc["attempts"]) for doc in released] == [("queued", 0)] * 3
        assert not any("claim_token" in doc for doc in released)
        assert stopping.run_once().idle
        assert len(provider.calls) == 1

        provider.on_send = None
        make_dispatcher().run_once()

        assert {status(store, doc_id)["state"] for doc_id in ids} == {"sent"}
        assert sorted(body for _, _, body in provider.calls) == ["m0", "m1", "m2", "m3"]
        assert sent["attempts"] == 1

    def test_broadcast_sends_one_message_per_verified_recipient(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
    ) -> None:
        campaign = broadcast(store)

        first = dispatcher.run_once()
        second = dispatcher.run_once()

        assert first.outcomes == {"expanded": 1}
        parent = status(store, campaign)
        assert (parent["state"], parent["recipients"]) == ("expanded", 2)
        assert sorted(provider.recipients()) == sorted([RECIPIENT, RECIPIENT_2])
        assert {(source, body) for _, source, body in provider.calls} == {(SENDER, "news")}
        assert second.outcomes == {"sent": 2}
        summary = status_queries.campaign(store.db, str(campaign))
        assert (summary["total"], summary["states"]) == (2, {"sent": 2})

    def test_broadcast_excludes_unverified_and_skips_opted_out_at_send(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        directory.opt_out(RECIPIENT_2, now=clock.now(), reason="STOP")
        campaign = broadcast(store)

        dispatcher.run_once()
        dispatcher.run_once()

        assert provider.recipients() == [RECIPIENT]
        assert store.find(f"{campaign}:{UNVERIFIED}") is None
        assert error_code(store, f"{campaign}:{RECIPIENT_2}") == "opted_out"

    def test_a_long_fanout_hands_back_its_request_and_messages_go_out_before_it_ends(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        monkeypatch.setattr(fanout, "CHUNK", 2)
        numbers = verified(store, directory, clock)
        reads = directory.verified_page

        def slow_read(cursor: str | None, limit: int) -> tuple[list[str], str | None]:
            clock.advance(fanout.SLICE_SECONDS)  # each chunk takes a whole slice
            return reads(cursor, limit)

        monkeypatch.setattr(directory, "verified_page", slow_read)
        campaign = broadcast(store)

        first = dispatcher.run_once()
        handed_back = outbox(store, campaign)
        second = dispatcher.run_once()

        assert first.outcomes == {"queued": 1}
        assert (handed_back["state"], handed_back["attempts"]) == ("queued", 0)
        assert handed_back["recipients"] == 2
        assert second.outcomes.get("sent", 0) >= 1, "no message went out while fanning out"
        assert status(store, campaign)["state"] != "expanded"
        for _ in range(10):
            dispatcher.run_once()
        assert status(store, campaign)["state"] == "expanded"
        assert sorted(provider.recipients()) == numbers

    def test_resumed_fanout_leaves_neither_duplicates_nor_gaps(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        numbers, campaign = pause_fanout_after_first_chunk(
            monkeypatch, dispatcher, store, directory, clock
        )

        paused = outbox(store, campaign)
        assert (paused["state"], paused["attempts"]) == ("queued", 0)
        assert paused["recipients"] == 2 and isinstance(paused["fanout_cursor"], str)
        assert store.outbox.count_documents({"campaign": str(campaign)}) == 2

        dispatcher.run_once()
        dispatcher.run_once()

        children = list(store.outbox.find({"campaign": str(campaign)}))
        assert sorted(child["_id"] for child in children) == [f"{campaign}:{n}" for n in numbers]
        assert status(store, campaign)["recipients"] == len(numbers)
        assert sorted(provider.recipients()) == numbers

    def test_a_fanout_finished_after_its_daemon_died_keeps_no_stale_lease_reason(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        numbers, campaign = pause_fanout_after_first_chunk(
            monkeypatch, dispatcher, store, directory, clock
        )
        # Its daemon died holding the claim; the lease runs out and recovery hands it on.
        store.outbox.update_one(
            {"_id": campaign},
            {"$set": {"state": "sending", "claim_token": "t-dead", "lease_until": clock.now()},
             "$inc": {"attempts": 1, "rev": 1}},
        )  # fmt: skip
        clock.advance(1)
        dispatcher.recover()
        assert error_code(store, campaign) == "lease_expired"

        dispatcher.run_once()
        dispatcher.run_once()

        done = status(store, campaign)
        assert (done["state"], done["recipients"]) == ("expanded", len(numbers))
        assert "error" not in done and "error" not in outbox(store, campaign)
        assert sorted(provider.recipients()) == numbers

    def test_fanout_resumed_after_a_crash_before_saving_progress_inserts_no_duplicate(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        numbers, campaign = pause_fanout_after_first_chunk(
            monkeypatch, dispatcher, store, directory, clock
        )
        # The worker died after inserting the chunk but before its progress was written.
        store.outbox.update_one(
            {"_id": campaign}, {"$unset": {"fanout_cursor": "", "recipients": ""}}
        )

        dispatcher.run_once()
        dispatcher.run_once()

        assert status(store, campaign)["recipients"] == len(numbers)
        assert store.outbox.count_documents({"campaign": str(campaign)}) == len(numbers)
        assert sorted(provider.recipients()) == numbers

    def test_broadcast_by_unauthorised_user_is_rejected(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
    ) -> None:
        campaign = broadcast(store, user="mallory")

        report = dispatcher.run_once()

        assert report.outcomes == {"rejected": 1}
        assert error_code(store, campaign) == "not_authorized"
        assert store.outbox.count_documents({"campaign": str(campaign)}) == 0
        assert provider.calls == []

    def test_broadcast_from_a_number_not_granted_is_rejected(
        self, dispatcher: Dispatcher, store: OutboxStore
    ) -> None:
        campaign = broadcast(store, **{"from": "12065550199"})

        dispatcher.run_once()

        assert error_code(store, campaign) == "source_not_granted"
        assert store.outbox.count_documents({"campaign": str(campaign)}) == 0

    def test_broadcast_with_no_verified_recipient_is_rejected(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
    ) -> None:
        directory.users.delete_many({"verified": True})
        campaign = broadcast(store)

        dispatcher.run_once()

        assert (status(store, campaign)["state"], error_code(store, campaign)) == (
            "rejected",
            "no_recipients",
        )
        assert dispatcher.run_once().idle
        assert provider.calls == []

    def test_idempotency_key_yields_one_message(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        first = producer.enqueue(
            store, user="alice", to=RECIPIENT, body="hello", now=clock.now(), key="order-1"
        )
        again = producer.enqueue(
            store, user="alice", to="(312) 555-0199", body="hello", now=clock.now(), key="order-1"
        )

        dispatcher.run_once()
        dispatcher.run_once()

        assert (first.created, again.created, again.id) == (True, False, first.id)
        assert store.outbox.count_documents({}) == 1
        assert provider.calls == [(RECIPIENT, SENDER, "hello")]

    def test_message_is_not_sent_before_it_is_due(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = submit(store, send_at=clock.now() + timedelta(minutes=30))

        dispatcher.run_once()
        assert (status(store, doc_id)["state"], provider.calls) == ("queued", [])

        clock.advance(1800)
        dispatcher.run_once()
        assert status(store, doc_id)["state"] == "sent"

    def test_stopped_dispatcher_does_nothing(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
    ) -> None:
        doc_id = submit(store)
        dispatcher.stop()

        assert dispatcher.run_once().idle
        assert "state" not in outbox(store, doc_id)
        assert provider.calls == []
