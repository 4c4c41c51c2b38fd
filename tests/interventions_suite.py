"""Operators can act: cancel what has not been sent, retry what failed with its past kept, and
see why a queued message waits. Shared by tests/unit/test_interventions.py (mongomock) and
tests/integration/test_interventions_on_server.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from jobs.dispatch import fanout
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.errors import PermanentError, UnknownOutcomeError
from jobs.model import State
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from jobs.rules import interventions
from tests.unit.fakes import LEASE, RECIPIENT, RECIPIENT_2, FakeProvider
from tests.unit.helpers import broadcast, outbox, status, submit

MORE = ["13125550111", "13125550122", "13125550133"]


def _failed(dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, **f: Any) -> Any:
    provider.fail_next(PermanentError("400", "unroutable", status=400))
    doc_id = submit(store, **f)
    dispatcher.run_once()
    assert outbox(store, doc_id)["state"] == "failed"
    return doc_id


class InterventionsSuite:
    """Cancel, retry and why a message waits; each suite brings its own `db`."""

    def test_a_queued_message_is_cancelled_with_who_and_when_and_never_sent(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = submit(store)
        dispatcher.admit()

        assert store.cancel(outbox(store, doc_id), "ops-ann") is not None
        dispatcher.run_once()

        projected = status(store, doc_id)
        assert projected["state"] == "cancelled"
        assert projected["cancelled"] == {"by": "ops-ann", "at": clock.now()}
        assert projected["error"]["code"] == "cancelled"
        assert provider.calls == []

    def test_a_message_not_yet_admitted_can_be_cancelled(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
    ) -> None:
        doc_id = submit(store)

        assert store.cancel(outbox(store, doc_id), "ops") is not None
        assert dispatcher.run_once().idle
        assert (outbox(store, doc_id)["state"], provider.calls) == ("cancelled", [])

    def test_a_message_in_flight_is_not_cancelled_and_finishes(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
    ) -> None:
        doc_id = submit(store)
        dispatcher.admit()
        [claimed] = store.claim(1, LEASE)

        assert store.cancel(outbox(store, doc_id), "ops") is None
        store.finish(claimed, State.SENT, provider_id="mdr2-x")

        assert outbox(store, doc_id)["state"] == "sent"

    def test_a_sent_message_cannot_be_cancelled(
        self, dispatcher: Dispatcher, store: OutboxStore
    ) -> None:
        doc_id = submit(store)
        dispatcher.run_once()

        assert store.cancel(outbox(store, doc_id), "ops") is None
        assert status(store, doc_id)["state"] == "sent"

    def test_cancelling_a_paused_broadcast_cancels_its_queued_messages_and_stops_the_fanout(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        monkeypatch.setattr(fanout, "CHUNK", 2)
        for number in MORE:
            directory.add(number, verified=True, now=clock.now())
        campaign = broadcast(store)
        dispatcher.admit()
        [parent] = store.claim(1, LEASE)
        calls = iter([False, True])
        config = DispatchConfig(lease_seconds=LEASE.total_seconds())
        fanout.expand(store, directory, clock, config, parent, lambda: next(calls, True))

        assert store.cancel(outbox(store, campaign), "ops") is not None
        assert store.cancel_campaign(str(campaign), "ops") == 2
        for _ in range(3):
            dispatcher.run_once()

        assert provider.calls == []
        assert outbox(store, campaign)["state"] == "cancelled"
        assert store.outbox.count_documents({"campaign": str(campaign)}) == 2

    def test_a_broadcast_cancelled_while_fanning_out_stops_and_cancels_what_it_inserted(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        directory: Directory,
        provider: FakeProvider,
        clock: ManualClock,
    ) -> None:
        monkeypatch.setattr(fanout, "CHUNK", 1)
        for number in MORE:
            directory.add(number, verified=True, now=clock.now())
        campaign = broadcast(store)
        dispatcher.admit()
        [parent] = store.claim(1, LEASE)
        checks = iter(range(100))

        def operator_cancels_after_the_first_chunk() -> bool:
            if next(checks) == 1:
                store.cancel(outbox(store, campaign), "ops")
                store.cancel_campaign(str(campaign), "ops")
            return False

        config = DispatchConfig(lease_seconds=LEASE.total_seconds())
        state = fanout.expand(
            store, directory, clock, config, parent, operator_cancels_after_the_first_chunk,
        )  # fmt: skip
        for _ in range(3):
            dispatcher.run_once()

        assert state == "cancelled"
        children = list(store.outbox.find({"campaign": str(campaign)}))
        assert len(children) == 2  # the first chunk, and the one inserted as the cancel landed
        assert {child["state"] for child in children} == {"cancelled"}
        assert provider.calls == []

    def test_a_failed_message_is_retried_with_its_past_kept_and_then_sent(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
    ) -> None:
        doc_id = _failed(dispatcher, store, provider)
        clock.advance(300)

        [retried] = store.retry("ops-ann", [doc_id], None, None)

        assert (retried["state"], retried["attempts"], retried["due_at"]) == (
            "queued",
            0,
            clock.now(),
        )
        [earlier] = status(store, doc_id)["history"]
        assert (earlier["state"], earlier["error"]["code"]) == ("failed", "provider")
        assert (earlier["attempts"], earlier["retried_by"]) == (1, "ops-ann")
        assert "error" not in status(store, doc_id)
        dispatcher.run_once()
        assert status(store, doc_id)["state"] == "sent"
        assert len(provider.calls) == 2

    def test_retry_by_reason_and_campaign_picks_only_those(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
    ) -> None:
        unknown_id = submit(store)
        provider.fail_next(UnknownOutcomeError("timeout", "no answer"))
        dispatcher.run_once()
        failed_id = _failed(dispatcher, store, provider, to=RECIPIENT_2)
        sent_id = submit(store, body="fine")
        dispatcher.run_once()

        assert [d["_id"] for d in store.retry("ops", None, None, "timeout")] == [unknown_id]
        assert [d["_id"] for d in store.retry("ops", None, "no-such-campaign", None)] == []
        assert [d["_id"] for d in store.retry("ops", None, None, "provider")] == [failed_id]
        assert store.retry("ops", [sent_id], None, None) == []

    def test_a_retried_message_is_checked_for_consent_again(
        self,
        dispatcher: Dispatcher,
        store: OutboxStore,
        provider: FakeProvider,
        directory: Directory,
        clock: ManualClock,
    ) -> None:
        doc_id = _failed(dispatcher, store, provider)
        directory.opt_out(RECIPIENT, now=clock.now(), reason="STOP")

        store.retry("ops", [doc_id], None, None)
        dispatcher.run_once()

        assert (status(store, doc_id)["state"], status(store, doc_id)["error"]["code"]) == (
            "rejected",
            "opted_out",
        )
        assert len(provider.calls) == 1

    def test_a_broadcast_request_is_never_retried(
        self, make_dispatcher: Callable[..., Dispatcher], store: OutboxStore
    ) -> None:
        campaign = broadcast(store)
        store.outbox.update_one({"_id": campaign}, {"$set": {"state": "failed", "rev": 1}})

        assert store.retry("ops", [campaign], None, None) == []

    def test_status_says_why_a_queued_message_waits(self, clock: ManualClock) -> None:
        now = clock.now()
        later = now + timedelta(hours=2)
        quiet = {"state": "queued", "due_at": later, "error": {"code": "quiet_hours"}}
        retry = {"state": "queued", "due_at": later, "error": {"code": "provider"}}

        assert "quiet hours" in (interventions.why_waiting(quiet, now) or "")
        assert later.isoformat() in (interventions.why_waiting(quiet, now) or "")
        assert "retrying after provider" in (interventions.why_waiting(retry, now) or "")
        scheduled = interventions.why_waiting({"state": "queued", "due_at": later}, now) or ""
        assert scheduled.startswith("scheduled (send_at)")
        due = interventions.why_waiting({"state": "queued", "due_at": now}, now) or ""
        assert due.startswith("due now")
        assert interventions.why_waiting({"state": "sent"}, now) is None
        assert "not admitted" in (interventions.why_waiting({}, now) or "")

    def test_a_cancel_that_races_a_renewal_reads_again_and_wins(
        self, dispatcher: Dispatcher, store: OutboxStore
    ) -> None:
        campaign = broadcast(store)
        dispatcher.admit()
        stale = outbox(store, campaign)
        [claimed] = store.claim(1, LEASE)
        store.renew(claimed, LEASE)

        assert store.cancel(stale, "ops") is not None
        assert outbox(store, campaign)["state"] == "cancelled"
        assert store.renew(claimed, LEASE) is None
