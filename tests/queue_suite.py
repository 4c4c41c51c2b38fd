"""The claim queue's tests (jobs/mongo/queue.py): what a claim finds through it, a queue that is
missing entries, and entries that are stale or forged. tests/unit/test_claim_queue.py runs them
on mongomock and tests/integration/test_claim_queue_on_server.py on the real server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from jobs.doubles.clock import ManualClock
from jobs.model import State
from jobs.mongo import queue
from jobs.mongo.store import Doc, OutboxStore
from jobs.rules import replies
from tests.store_suite import PROBLEM
from tests.store_suite import queue as queue_one
from tests.unit.fakes import LEASE, RECIPIENT


def left_queued(store: OutboxStore, clock: ManualClock, count: int, **fields: Any) -> list[Any]:
    """Messages queued by a writer that gave them no place in the claim queue (an earlier
    version, or a daemon that died between the two writes)."""
    docs = [
        {"user": "alice", "to": RECIPIENT, "body": f"left {i}", "state": "queued", "priority": 0,
         "due_at": clock.now(), "rev": 1, "attempts": 0, **fields}
        for i in range(count)
    ]  # fmt: skip
    return list(store.outbox.insert_many(docs).inserted_ids)


def claimed_ids(store: OutboxStore, limit: int = 10) -> list[Any]:
    return [doc["_id"] for doc in store.claim(limit, LEASE)]


class QueueSuite:
    """The claim queue's tests; a test module subclasses this with its own `db`."""

    @pytest.fixture
    def store(self, db: Database[Doc], clock: ManualClock) -> OutboxStore:
        store = OutboxStore(db, clock, send_guard="none")
        store.ensure_indexes()
        return store

    def test_a_queued_message_has_its_two_entries_and_they_go_with_its_claim(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue_one(store, clock)

        assert sorted(e["_id"][0] for e in store.queue.entries.find({"m": doc_id})) == ["a", "b"]
        assert claimed_ids(store) == [doc_id]
        assert store.queue.entries.count_documents({}) == 0

    def test_a_message_queued_again_later_is_claimed_when_it_is_due_again(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue_one(store, clock)
        [doc] = store.claim(1, LEASE)
        store.retry_later(doc, clock.now() + timedelta(minutes=1), PROBLEM, refund=True)

        assert claimed_ids(store) == []
        clock.advance(61)
        assert claimed_ids(store) == [doc_id]

    def test_messages_left_queued_without_entries_are_claimed_in_claim_order(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        low = left_queued(store, clock, 3)
        urgent = left_queued(store, clock, 1, priority=5)

        assert claimed_ids(store, 2) == [*urgent, low[0]]
        assert claimed_ids(store) == low[1:]

    def test_a_reply_left_queued_without_entries_still_goes_first(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        store.queue.repair_page = 2
        urgent = left_queued(store, clock, 3, priority=100)
        [reply] = left_queued(store, clock, 1, _id=f"{replies.PREFIX}stop:in-1", user=replies.USER)

        assert claimed_ids(store, 2) == [reply, urgent[0]]

    def test_a_long_queue_left_without_entries_drains_claim_after_claim(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        store.queue.repair_page = 10
        left = left_queued(store, clock, 35)

        claimed: list[Any] = []
        for _ in range(10):
            claimed += claimed_ids(store, 5)

        assert sorted(claimed) == sorted(left)

    def test_entries_lost_after_the_first_claim_are_found_within_the_repair_interval(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        assert claimed_ids(store) == []  # the first claim looks for missing entries: none
        doc_id = queue_one(store, clock)
        store.queue.entries.delete_many({})

        assert claimed_ids(store) == []
        clock.advance(queue.REPAIR_SECONDS[0])
        assert claimed_ids(store) == [doc_id]

    def test_stale_and_forged_entries_claim_nothing_that_is_not_due_and_are_dropped(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        later = queue_one(store, clock, send_at=clock.now() + timedelta(hours=1))
        sent = queue_one(store, clock)
        [doc] = store.claim(1, LEASE)
        store.finish(doc, State.SENT, provider_id="mdr2-1")
        due = queue_one(store, clock)
        now = clock.now()
        forged = [
            *queue.entries({"_id": later, "priority": 100, "due_at": now}, "t1"),
            *queue.entries({"_id": sent, "priority": 100, "due_at": now}, "t2"),
            *queue.entries({"_id": ObjectId(), "priority": 100, "due_at": now}, "t3"),
            {"_id": "a|000|0000000000000|x", "m": {"$exists": True}, "t": "t4"},
            {"_id": "a|junk", "m": later, "t": "t5"},
            {"_id": "b|000|junk", "m": later, "t": "t6"},
        ]
        store.queue.entries.insert_many(forged)

        assert claimed_ids(store) == [due]
        left = store.outbox.find_one({"_id": later}, {"state": 1})
        assert left == {"_id": later, "state": "queued"}
        assert store.queue.entries.count_documents({"t": {"$in": ["t2", "t3", "t4"]}}) == 0

    def test_an_entry_written_again_after_a_claim_read_it_stays(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc = {"_id": "m-1", "state": "queued", "priority": 0, "due_at": clock.now()}
        store.queue.offer([doc])
        read = store.queue.heads(clock.now(), 10)
        store.queue.offer([doc])  # the same place, written again by the message's next writer

        store.queue.drop(read)

        assert store.queue.entries.count_documents({"m": "m-1"}) == 2

    def test_the_others_turns_are_found_past_a_broadcast_queued_before_them(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        mass = [queue_one(store, clock, body=f"mass {i}") for i in range(30)]
        clock.advance(1)
        bob = queue_one(store, clock, user="bob")
        carol = queue_one(store, clock, user="carol", priority=-1)

        first = claimed_ids(store, 3)

        assert first == [mass[0], bob, mass[1]]
        assert claimed_ids(store, 28) == mass[2:], "a lower priority waits for the higher"
        assert claimed_ids(store) == [carol]

    def test_a_cancelled_campaign_leaves_no_entries_before_the_messages_behind_it(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        now = clock.now()
        store.add_children(
            {"_id": f"c1:{i}", "kind": "message", "user": "alice", "to": RECIPIENT, "body": "x",
             "campaign": "c1", "state": "queued", "priority": 0, "due_at": now, "attempts": 0,
             "rev": 1, "synced": False, "created_at": now, "updated_at": now}
            for i in range(5)
        )  # fmt: skip
        clock.advance(1)
        after = queue_one(store, clock, priority=-1)

        assert store.cancel_campaign("c1", by="ops") == 5

        ids = [f"c1:{i}" for i in range(5)]
        assert store.queue.entries.count_documents({"m": {"$in": ids}}) == 0
        assert store.queue.heads(clock.now(), 10)[0]["m"] == after
