"""The outbox contract, held by the in-memory outbox and by the MongoDB store on mongomock."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from pymongo.database import Database

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.doubles.memory import MemoryOutbox
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from jobs.ports import Outbox
from jobs.rules import intake
from tests.outbox_contract import OutboxContract
from tests.unit.fakes import RECIPIENT, RECIPIENT_2, CountingPacer, FakeProvider


class TestMemoryOutbox(OutboxContract):
    @pytest.fixture
    def outbox(self, clock: ManualClock) -> MemoryOutbox:
        return MemoryOutbox(clock)


class TestMongoStoreOnMongomock(OutboxContract):
    @pytest.fixture
    def outbox(self, db: Database[Doc], clock: ManualClock) -> OutboxStore:
        store = OutboxStore(db, clock)
        store.ensure_indexes()
        return store

    @pytest.mark.skip(reason="mongomock's $inc raises TypeError, not the server's type mismatch")
    def test_a_document_whose_counters_were_overwritten_is_rejected_not_claimed(
        self, outbox: Outbox, clock: ManualClock
    ) -> None:
        """Held on the server (tests/integration/test_outbox_contract_on_server.py)."""


def test_the_in_memory_outbox_hands_each_message_to_one_of_many_threads(
    clock: ManualClock,
) -> None:
    outbox = MemoryOutbox(clock)
    for n in range(200):
        doc = {"user": "alice", "to": RECIPIENT, "body": f"message {n}"}
        outbox.admit(outbox.insert(doc), intake.admit(doc, clock.now()))
    claimed: list[object] = []

    def worker() -> None:
        while batch := outbox.claim(3, timedelta(seconds=60)):
            claimed.extend(doc["_id"] for doc in batch)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert len(claimed) == len(set(claimed)) == 200


def test_the_send_cycle_runs_on_the_in_memory_outbox(
    clock: ManualClock, directory: Directory, provider: FakeProvider
) -> None:
    outbox = MemoryOutbox(clock)
    config = DispatchConfig(lease_seconds=120, max_attempts=3)
    dispatcher = Dispatcher(outbox, directory, provider, CountingPacer(), clock, config)
    single = outbox.insert({"user": "alice", "to": RECIPIENT, "body": "hello"})
    campaign = outbox.insert({"user": "alice", "audience": "verified", "body": "news"})
    refused = outbox.insert({"user": "mallory", "to": RECIPIENT, "body": "spam"})

    for _ in range(5):
        if dispatcher.run_once().idle:
            break

    states = {
        doc_id: (outbox.projected(doc_id) or {}).get("state") for doc_id in (single, campaign)
    }
    assert states == {single: "sent", campaign: "expanded"}
    assert (outbox.projected(refused) or {}).get("error", {}).get("code") == "not_authorized"
    assert sorted(provider.recipients()) == sorted([RECIPIENT, RECIPIENT, RECIPIENT_2])
