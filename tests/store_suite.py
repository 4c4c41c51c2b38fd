"""The outbox store's tests: claim order, fenced writes on the claim token, and the status
projection. tests/unit/test_store.py runs them on mongomock and
tests/integration/test_store_on_server.py on the real server; each brings its own `db` fixture."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pymongo.database import Database

from jobs.doubles.clock import ManualClock
from jobs.errors import DuplicateKey
from jobs.model import Problem, Reason, State
from jobs.mongo.store import Doc, OutboxStore
from jobs.rules import intake
from tests.unit.fakes import LEASE, RECIPIENT, RECIPIENT_2
from tests.unit.fixtures import GUARDS, guarded_store
from tests.unit.helpers import outbox, status

PROBLEM = Problem(Reason.PROVIDER, "503: down")


def queue(store: OutboxStore, clock: ManualClock, **fields: Any) -> Any:
    """Insert a producer document and admit it, as the daemon would."""
    doc = {"user": "alice", "to": RECIPIENT, "body": "hello", **fields}
    doc_id = store.insert(doc)
    assert store.admit(doc_id, intake.admit(doc, clock.now())) is not None
    return doc_id


def claim_one(store: OutboxStore) -> dict[str, Any]:
    [doc] = store.claim(1, LEASE)
    return doc


def child(campaign: str, number: str, clock: ManualClock) -> dict[str, Any]:
    now = clock.now()
    return {
        "_id": f"{campaign}:{number}",
        "kind": "message",
        "user": "alice",
        "to": number,
        "body": "news",
        "campaign": campaign,
        "state": "queued",
        "due_at": now,
        "attempts": 0,
        "rev": 1,
        "synced": False,
        "created_at": now,
        "updated_at": now,
    }


def lose_lease_in_flight(store: OutboxStore, clock: ManualClock) -> dict[str, Any]:
    """Claim, mark in flight, let the lease lapse and record the recovery's `unknown`."""
    claimed = claim_one(store)
    store.renew(claimed, LEASE, in_flight=True)
    clock.advance(LEASE.total_seconds() + 1)
    [expired] = store.expired_leases(10)
    problem = Problem(Reason.LEASE_EXPIRED, "worker stopped")
    assert store.finish(expired, State.UNKNOWN, problem=problem) is not None
    return claimed


class StoreSuite:
    """The store's tests; a test module subclasses this with its own `db`."""

    @pytest.fixture(params=GUARDS)
    def store(
        self, db: Database[Doc], clock: ManualClock, request: pytest.FixtureRequest
    ) -> OutboxStore:
        """The store under each send guard; every fixture built on `store` follows it."""
        return guarded_store(db, clock, request.param)

    def test_admit_queues_the_document_and_projects_its_status(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock, to="(312) 555-0199")

        doc = outbox(store, doc_id)
        assert (doc["state"], doc["kind"], doc["to"], doc["rev"]) == (
            "queued",
            "message",
            RECIPIENT,
            1,
        )
        assert doc["due_at"] == clock.now()
        assert doc["synced"] is False, "marked synced with the rest of the cycle's copies"
        assert store.mark_synced() == 1
        assert outbox(store, doc_id)["synced"] is True
        projected = status(store, doc_id)
        assert (projected["state"], projected["to"], projected["rev"]) == ("queued", RECIPIENT, 1)
        assert "body" not in projected

    def test_admit_records_a_rejection_with_its_reason(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc = {"user": "alice", "to": RECIPIENT, "body": ""}
        doc_id = store.insert(doc)

        store.admit(doc_id, intake.admit(doc, clock.now()))

        assert outbox(store, doc_id)["state"] == "rejected"
        assert status(store, doc_id)["error"]["code"] == "empty_body"
        assert store.claim(10, LEASE) == []

    def test_a_document_is_admitted_only_once(self, store: OutboxStore, clock: ManualClock) -> None:
        doc = {"user": "alice", "to": RECIPIENT, "body": "hello"}
        doc_id = store.insert(doc)
        admission = intake.admit(doc, clock.now())

        assert store.admit(doc_id, admission) is not None
        assert store.admit(doc_id, admission) is None
        assert store.new_documents(10) == []

    def test_claim_takes_highest_priority_first_then_oldest_due(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        now = clock.now()
        late = queue(store, clock, send_at=now - timedelta(minutes=1))
        early = queue(store, clock, send_at=now - timedelta(minutes=5))
        urgent = queue(store, clock, priority=10)
        low = queue(store, clock, priority=-5, send_at=now - timedelta(hours=1))

        claimed = store.claim(10, LEASE)

        assert [doc["_id"] for doc in claimed] == [urgent, early, late, low]

    def test_claim_takes_at_most_the_limit(self, store: OutboxStore, clock: ManualClock) -> None:
        for _ in range(5):
            queue(store, clock)

        assert len(store.claim(3, LEASE)) == 3
        assert len(store.claim(3, LEASE)) == 2
        assert store.claim(3, LEASE) == []

    def test_message_not_yet_due_is_not_claimed(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock, send_at=clock.now() + timedelta(minutes=10))

        assert store.claim(10, LEASE) == []
        clock.advance(600)
        assert [doc["_id"] for doc in store.claim(10, LEASE)] == [doc_id]

    def test_claim_sets_token_lease_and_counts_the_attempt(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        first, second = queue(store, clock), queue(store, clock)

        claimed = store.claim(10, LEASE)

        tokens = {doc["claim_token"] for doc in claimed}
        assert len(tokens) == 2
        for doc_id in (first, second):
            doc = outbox(store, doc_id)
            assert doc["state"] == "sending"
            assert doc["claim_token"] in tokens
            assert doc["lease_until"] == clock.now() + LEASE
            assert (doc["attempts"], doc["in_flight"], doc["rev"]) == (1, False, 2)
            assert (status(store, doc_id)["state"], status(store, doc_id)["attempts"]) == (
                "sending",
                1,
            )
        assert store.claim(10, LEASE) == []

    def test_finish_records_the_outcome_and_drops_the_claim(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        claimed = claim_one(store)
        clock.advance(2)

        assert store.finish(claimed, State.SENT, provider_id="mdr2-abc") is not None

        doc = outbox(store, doc_id)
        assert (doc["state"], doc["provider_id"], doc["sent_at"]) == (
            "sent",
            "mdr2-abc",
            clock.now(),
        )
        assert doc["last_claim_token"] == claimed["claim_token"]
        assert not {"claim_token", "lease_until", "in_flight"} & doc.keys()
        assert (status(store, doc_id)["state"], status(store, doc_id)["provider_id"]) == (
            "sent",
            "mdr2-abc",
        )
        # The claim is spent: the same token cannot write again.
        assert store.finish(claimed, State.FAILED, problem=PROBLEM) is None
        assert outbox(store, doc_id)["state"] == "sent"

    @pytest.mark.parametrize(("refund", "attempts"), [(True, 0), (False, 1)])
    def test_retry_later_queues_again_and_refunds_only_when_asked(
        self, store: OutboxStore, clock: ManualClock, refund: bool, attempts: int
    ) -> None:
        doc_id = queue(store, clock)
        due = clock.now() + timedelta(seconds=30)

        store.retry_later(claim_one(store), due, PROBLEM, refund=refund)

        doc = outbox(store, doc_id)
        assert (doc["state"], doc["due_at"], doc["attempts"]) == ("queued", due, attempts)
        assert doc["error"] == {"code": "provider", "detail": "503: down"}
        assert "claim_token" not in doc
        assert store.claim(10, LEASE) == []
        clock.advance(30)
        assert [d["_id"] for d in store.claim(10, LEASE)] == [doc_id]

    def test_release_hands_back_due_now_with_the_attempt_refunded(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        claimed = claim_one(store)
        clock.advance(5)

        assert store.release(claimed) is not None

        doc = outbox(store, doc_id)
        assert (doc["state"], doc["due_at"], doc["attempts"]) == ("queued", clock.now(), 0)
        assert not {"claim_token", "lease_until", "in_flight"} & doc.keys()

    def test_renew_extends_the_lease_and_marks_in_flight(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        claimed = claim_one(store)
        clock.advance(100)

        assert store.renew(claimed, LEASE, in_flight=True) is not None

        doc = outbox(store, doc_id)
        assert (doc["lease_until"], doc["in_flight"]) == (clock.now() + LEASE, True)
        clock.advance(100)
        assert store.expired_leases(10) == []

    def test_expired_leases_lists_only_lapsed_claims(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        stale = queue(store, clock)
        claim_one(store)
        clock.advance(60)
        fresh = queue(store, clock)
        claim_one(store)
        queue(store, clock)

        clock.advance(LEASE.total_seconds() - 60)

        assert [doc["_id"] for doc in store.expired_leases(10)] == [stale]
        clock.advance(60)
        assert {doc["_id"] for doc in store.expired_leases(10)} == {stale, fresh}

    def test_worker_with_expired_lease_cannot_overwrite_another_workers_record(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        stale = claim_one(store)
        clock.advance(LEASE.total_seconds() + 1)
        [expired] = store.expired_leases(10)
        store.retry_later(expired, clock.now(), Problem(Reason.LEASE_EXPIRED, "worker stopped"))
        current = claim_one(store)

        assert store.finish(stale, State.FAILED, problem=PROBLEM) is None
        assert store.retry_later(stale, clock.now(), PROBLEM, refund=True) is None
        assert store.release(stale) is None
        assert store.renew(stale, LEASE, in_flight=True) is None

        doc = outbox(store, doc_id)
        assert (doc["state"], doc["claim_token"], doc["attempts"]) == (
            "sending",
            current["claim_token"],
            2,
        )
        assert store.finish(current, State.SENT, provider_id="mdr2-new") is not None
        assert (status(store, doc_id)["state"], status(store, doc_id)["provider_id"]) == (
            "sent",
            "mdr2-new",
        )

    def test_status_projection_never_goes_backwards(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        claimed = claim_one(store)
        store.finish(claimed, State.SENT, provider_id="mdr2-abc")

        store.project(claimed)
        store.mark_synced()

        projected = status(store, doc_id)
        assert (projected["state"], projected["rev"]) == ("sent", 3)
        assert outbox(store, doc_id)["synced"] is True

    def test_resync_reprojects_an_unsynced_document_after_the_grace(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        # A worker that crashed between writing the outbox and copying it to message_status.
        store.outbox.update_one(
            {"_id": doc_id},
            {
                "$set": {"state": "sent", "synced": False, "updated_at": clock.now()},
                "$inc": {"rev": 1},
            },
        )

        clock.advance(5)
        assert store.resync(100) == 0
        assert status(store, doc_id)["state"] == "queued"

        clock.advance(6)
        assert store.resync(100) == 1
        assert (status(store, doc_id)["state"], status(store, doc_id)["rev"]) == ("sent", 2)
        assert outbox(store, doc_id)["synced"] is True
        assert store.resync(100) == 0

    def test_documents_without_a_key_coexist(self, store: OutboxStore) -> None:
        store.insert({"user": "alice", "to": RECIPIENT, "body": "one"})
        store.insert({"user": "alice", "to": RECIPIENT, "body": "two"})

        assert store.outbox.count_documents({}) == 2

    def test_the_same_key_cannot_be_inserted_twice(self, store: OutboxStore) -> None:
        first = store.insert({"user": "alice", "to": RECIPIENT, "body": "one", "key": "order-1"})

        with pytest.raises(DuplicateKey):
            store.insert({"user": "alice", "to": RECIPIENT_2, "body": "two", "key": "order-1"})

        assert store.outbox.count_documents({}) == 1
        found = store.find_by_key("order-1", "alice")
        assert found is not None
        assert found["_id"] == first

    def test_add_children_skips_those_already_inserted(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        numbers = [RECIPIENT, RECIPIENT_2, "13125550111"]
        store.add_children(child("c1", n, clock) for n in numbers[:2])
        store.outbox.update_one({"_id": f"c1:{RECIPIENT}"}, {"$set": {"state": "sent", "rev": 5}})

        inserted = store.add_children(child("c1", n, clock) for n in numbers)

        assert [doc["_id"] for doc in inserted] == ["c1:13125550111"]
        assert store.outbox.count_documents({"campaign": "c1"}) == 3
        assert outbox(store, f"c1:{RECIPIENT}")["state"] == "sent"
        assert status(store, "c1:13125550111")["state"] == "queued"

    def test_a_child_made_again_over_a_stale_status_copy_is_copied_and_marked_synced(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        # Its status copy outlived it (the message was deleted): the copies are inserted in
        # bulk, and the one already there is written the guarded way instead.
        store.add_children([child("c2", RECIPIENT, clock)])
        store.status.update_one({"_id": f"c2:{RECIPIENT}"}, {"$set": {"state": "stale"}})
        store.outbox.delete_one({"_id": f"c2:{RECIPIENT}"})

        inserted = store.add_children(child("c2", n, clock) for n in (RECIPIENT, RECIPIENT_2))
        store.mark_synced()

        assert len(inserted) == 2
        for number in (RECIPIENT, RECIPIENT_2):
            assert status(store, f"c2:{number}")["state"] == "queued"
            assert outbox(store, f"c2:{number}")["synced"] is True

    def test_add_children_of_nothing_inserts_nothing(self, store: OutboxStore) -> None:
        assert store.add_children([]) == []
        assert store.outbox.count_documents({}) == 0

    def test_late_success_upgrades_the_unknown_its_lease_caused(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        claimed = lose_lease_in_flight(store, clock)
        clock.advance(3)

        assert store.record_late_success(claimed, "mdr2-late") is not None

        doc = outbox(store, doc_id)
        assert (doc["state"], doc["provider_id"], doc["sent_at"]) == (
            "sent",
            "mdr2-late",
            clock.now(),
        )
        assert "error" not in doc
        projected = status(store, doc_id)
        assert (projected["state"], projected["provider_id"]) == ("sent", "mdr2-late")
        assert projected["updated_at"] == clock.now()
        assert "error" not in projected

    def test_late_success_of_another_claim_changes_nothing(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        lose_lease_in_flight(store, clock)
        impostor = {"_id": doc_id, "claim_token": "0" * 32}

        assert store.record_late_success(impostor, "mdr2-late") is None
        assert outbox(store, doc_id)["state"] == "unknown"

    def test_late_success_does_not_touch_a_message_that_is_not_unknown(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        claimed = claim_one(store)
        store.finish(claimed, State.FAILED, problem=PROBLEM)

        assert store.record_late_success(claimed, "mdr2-late") is None
        assert (outbox(store, doc_id)["state"], status(store, doc_id)["state"]) == (
            "failed",
            "failed",
        )

    def test_copies_a_dead_worker_never_marked_synced_are_resynced_by_another(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        store.mark_synced()
        claim_one(store)  # the worker dies before its cycle marks the `sending` copy synced
        assert outbox(store, doc_id)["synced"] is False
        other = OutboxStore(store.db, clock)

        clock.advance(5)
        assert other.resync(100) == 0

        clock.advance(6)
        assert other.resync(100) == 1
        assert (status(store, doc_id)["state"], status(store, doc_id)["rev"]) == ("sending", 2)
        assert outbox(store, doc_id)["synced"] is True

    def test_marking_synced_skips_a_document_changed_since_its_copy(
        self, store: OutboxStore, clock: ManualClock
    ) -> None:
        doc_id = queue(store, clock)
        # Another writer changed the document after this store copied revision 1.
        store.outbox.update_one({"_id": doc_id}, {"$set": {"state": "sent"}, "$inc": {"rev": 1}})

        store.mark_synced()

        assert outbox(store, doc_id)["synced"] is False, "revision 2 still waits for its copy"
        assert store.mark_synced() == 0
