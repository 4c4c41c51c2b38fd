"""Replays, on the real server: a writer with access to every collection but no signing key
copies, renames and deletes signed documents, and nobody is texted twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId, json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from pydantic import SecretStr
from pymongo.database import Database

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.errors import RetryableError
from jobs.flowroute import FlowrouteClient
from jobs.keys import KeyRing, Signatures
from jobs.mongo import queue
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from jobs.rules import signing
from jobs.simulator.server import FlowrouteSimulator
from tests.unit.fakes import (
    LEASE,
    MAX_ATTEMPTS,
    RECIPIENT,
    RECIPIENT_2,
    CountingPacer,
    FakeProvider,
)

MORE = ["13125550111", "13125550122", "13125550133"]


@pytest.fixture(params=["tickets", "none"])
def store(db: Database[Doc], clock: ManualClock, request: pytest.FixtureRequest) -> OutboxStore:
    """The store with either send guard: replays are refused with tickets and without."""
    outbox = OutboxStore(db, clock, request.param)
    outbox.ensure_indexes()
    return outbox


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    ring = KeyRing(tmp_path / "keys")
    ring.create_user_key("alice")
    return ring


@pytest.fixture
def daemon(
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    clock: ManualClock,
    keys: KeyRing,
) -> Dispatcher:
    config = DispatchConfig(lease_seconds=LEASE.total_seconds(), max_attempts=MAX_ATTEMPTS)
    return Dispatcher(store, directory, provider, CountingPacer(), clock, config, Signatures(keys))


def alice_key(keys: KeyRing) -> str:
    key = keys.user_key("alice")
    assert key is not None
    return key


def signed(keys: KeyRing, **fields: Any) -> Doc:
    """A document as a producer signs it: its own _id first, then the signature."""
    doc: Doc = {"_id": ObjectId(), "user": "alice", "to": RECIPIENT, "body": "hello", **fields}
    doc["signature"] = signing.sign(alice_key(keys), doc)
    return doc


def settle(daemon: Dispatcher, rounds: int = 6) -> None:
    for _ in range(rounds):
        if daemon.run_once().idle:
            return


def outcome(store: OutboxStore, doc_id: Any) -> tuple[str, str | None]:
    found = store.status.find_one({"_id": doc_id})
    assert found is not None
    return found["state"], (found.get("error") or {}).get("code")


def next_repair(clock: ManualClock) -> None:
    """Let the claim queue's next repair come round: a document written straight into the
    `queued` state has no entry in the claim queue until a repair finds it."""
    clock.advance(queue.REPAIR_SECONDS[0])


def producer_copy(doc: Doc, **changes: Any) -> Doc:
    """What a writer inserts: the producer's fields and signature, none of the daemon's."""
    fields = {"_id", "user", "to", "from", "body", "key", "send_at", "priority", "audience"}
    copy = {k: v for k, v in doc.items() if k in fields or k == "signature"}
    return {**copy, **changes}


def test_a_copy_of_a_sent_message_under_a_new_id_is_refused(
    daemon: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    original = signed(keys)
    store.outbox.insert_one(original)
    settle(daemon)
    copy = producer_copy(original, _id=ObjectId())
    store.outbox.insert_one(copy)

    settle(daemon)

    assert outcome(store, original["_id"]) == ("sent", None)
    assert outcome(store, copy["_id"]) == ("rejected", "signature")
    assert provider.recipients() == [RECIPIENT]


def test_a_keyed_message_copied_after_renaming_its_key_is_refused(
    daemon: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    original = signed(keys, key="appt-1")
    store.outbox.insert_one(original)
    settle(daemon)
    store.outbox.update_one({"_id": original["_id"]}, {"$set": {"key": "renamed"}})
    copy = producer_copy(original, _id=ObjectId())
    store.outbox.insert_one(copy)

    settle(daemon)

    assert provider.recipients() == [RECIPIENT]
    assert outcome(store, copy["_id"]) == ("rejected", "signature")


def test_a_sent_message_deleted_and_inserted_again_is_a_replay(
    daemon: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    original = signed(keys)
    store.outbox.insert_one(original)
    settle(daemon)
    store.outbox.delete_one({"_id": original["_id"]})
    store.status.delete_one({"_id": original["_id"]})
    store.outbox.insert_one(producer_copy(original))
    settle(daemon)
    assert outcome(store, original["_id"]) == ("rejected", "replay")
    # The same id as text instead of an ObjectId signs the same: still the same id.
    store.outbox.delete_one({"_id": original["_id"]})
    store.outbox.insert_one(producer_copy(original, _id=str(original["_id"])))

    settle(daemon)

    # The outbox, not the status: some servers treat the two ids as one in a unique index.
    copy = store.find(str(original["_id"])) or {}
    assert (copy["state"], copy["error"]["code"]) == ("rejected", "replay")
    assert provider.recipients() == [RECIPIENT]


def test_a_message_retried_after_a_5xx_is_not_taken_for_a_replay(
    daemon: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    doc = signed(keys)
    store.outbox.insert_one(doc)
    provider.fail_next(RetryableError("502", "bad gateway", 502))
    settle(daemon)
    assert outcome(store, doc["_id"])[0] == "queued"

    clock.advance(3600)
    settle(daemon)

    assert outcome(store, doc["_id"]) == ("sent", None)
    assert provider.recipients() == [RECIPIENT, RECIPIENT]


def broadcast(store: OutboxStore, directory: Directory, keys: KeyRing, clock: ManualClock) -> Doc:
    for number in MORE:
        directory.add(number, verified=True, now=clock.now())
    request = signed(keys, to=None, audience="verified", body="news")
    del request["to"]
    request["signature"] = signing.sign(alice_key(keys), request)
    store.outbox.insert_one(request)
    return request


def everyone() -> list[str]:
    return sorted([RECIPIENT, RECIPIENT_2, *MORE])


def test_a_broadcast_message_copied_under_another_id_is_refused(
    daemon: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    request = broadcast(store, directory, keys, clock)
    settle(daemon)
    child = store.find(f"{request['_id']}:{RECIPIENT}")
    assert child is not None
    fields = ("user", "to", "from", "body", "campaign", "signature", "priority", "kind")
    again: Doc = {k: child[k] for k in fields}
    again.update(_id=f"{child['_id']}:again", state="queued", due_at=clock.now(), attempts=0)
    store.outbox.insert_one(again)
    # The same message as the retired form signed it, which did not cover the _id.
    retired = {**again, "_id": f"{child['_id']}:v1"}
    retired["signature"] = signing.sign(keys.daemon_key(), retired, signing.RETIRED_VERSION)
    store.outbox.insert_one(retired)
    next_repair(clock)

    settle(daemon)

    assert outcome(store, again["_id"]) == ("rejected", "signature")
    assert outcome(store, retired["_id"]) == ("rejected", "replay")
    assert sorted(provider.recipients()) == everyone()


def test_a_broadcast_message_deleted_and_inserted_again_is_a_replay(
    daemon: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    request = broadcast(store, directory, keys, clock)
    settle(daemon)
    child = store.find(f"{request['_id']}:{RECIPIENT}")
    assert child is not None
    store.outbox.delete_one({"_id": child["_id"]})
    again = {k: v for k, v in child.items() if k not in ("provider_id", "sent_at")}
    again.update(state="queued", due_at=clock.now(), attempts=0)
    store.outbox.insert_one(again)
    next_repair(clock)

    settle(daemon)

    assert outcome(store, child["_id"]) == ("rejected", "replay")
    assert sorted(provider.recipients()) == everyone()


def test_a_broadcast_request_inserted_again_starts_no_second_campaign(
    daemon: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    request = broadcast(store, directory, keys, clock)
    settle(daemon)
    campaign = str(request["_id"])
    store.outbox.delete_many({"$or": [{"_id": request["_id"]}, {"campaign": campaign}]})
    store.status.delete_many({"$or": [{"_id": request["_id"]}, {"campaign": campaign}]})
    store.outbox.insert_one(producer_copy(request))

    settle(daemon)

    assert outcome(store, request["_id"]) == ("rejected", "replay")
    assert store.outbox.count_documents({"campaign": campaign}) == 0
    assert sorted(provider.recipients()) == everyone()


def test_a_retired_v1_signature_is_refused_with_a_reason_that_says_so(
    daemon: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    doc = signed(keys)
    doc["signature"] = signing.sign(alice_key(keys), doc, signing.RETIRED_VERSION)
    unbound = signed(keys)
    unbound["signature"] = signing.sign(alice_key(keys), {**unbound, "_id": None})
    store.outbox.insert_many([doc, unbound])

    settle(daemon)

    assert outcome(store, doc["_id"]) == ("rejected", "signature")
    retired = store.status.find_one({"_id": doc["_id"]}) or {}
    assert "retired sms-outbox-v1" in retired["error"]["detail"]
    without_id = store.status.find_one({"_id": unbound["_id"]}) or {}
    assert "signed without its _id" in without_id["error"]["detail"]
    assert provider.calls == []


def test_a_due_time_moved_before_the_signed_send_at_does_not_send_early(
    daemon: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    send_at = (clock.now() + timedelta(hours=2)).replace(microsecond=0)
    doc = signed(keys, send_at=send_at)
    request = broadcast(store, directory, keys, clock)
    store.outbox.update_one({"_id": request["_id"]}, {"$set": {"send_at": send_at}})
    store.outbox.delete_one({"_id": request["_id"]})
    request["send_at"] = send_at
    request["signature"] = signing.sign(alice_key(keys), request)
    store.outbox.insert_many([doc, request])
    daemon.admit()
    store.outbox.update_many({}, {"$set": {"due_at": clock.now()}})

    settle(daemon)

    assert provider.calls == []
    assert outcome(store, doc["_id"]) == ("queued", "not_due")
    assert outcome(store, request["_id"]) == ("queued", "not_due")
    clock.advance(3600)
    settle(daemon)
    # Fanned out at send_at, its messages are bound to it too.
    assert provider.calls == []
    clock.advance(3601)
    settle(daemon)
    assert store.outbox.count_documents({"campaign": str(request["_id"])}) == len(everyone())
    store.outbox.update_many({"campaign": {"$exists": True}}, {"$set": {"due_at": clock.now()}})
    settle(daemon)
    assert sorted(provider.recipients()) == sorted([RECIPIENT, *everyone()])


def test_daemon_fields_in_a_producers_document_do_not_steer_the_daemon(
    daemon: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    request = broadcast(store, directory, keys, clock)
    store.outbox.delete_one({"_id": request["_id"]})
    planted = {"fanout_cursor": cursor_before_last(store), "recipients": 4, "attempts": -50,
               "rev": 99, "claim_token": "x", "provider_id": "mdr2-fake",
               "error": {"code": "x"}}  # fmt: skip
    store.outbox.insert_one({**request, **planted})

    daemon.admit()
    admitted = store.find(request["_id"]) or {}
    assert not {"fanout_cursor", "claim_token", "provider_id", "error"} & admitted.keys()
    assert (admitted["attempts"], admitted["rev"]) == (0, 1)
    settle(daemon)

    assert sorted(provider.recipients()) == everyone()
    assert (store.status.find_one({"_id": request["_id"]}) or {})["recipients"] == 5


def cursor_before_last(store: OutboxStore) -> str:
    """Fan-out progress that, if believed, would skip every recipient but the last."""
    records = list(store.db["users"].find({"verified": True}).sort("_id", 1))
    return str(json_util.dumps(records[-2]["_id"], json_options=CANONICAL_JSON_OPTIONS))


def test_unsealed_fanout_progress_written_into_the_queue_is_ignored(
    daemon: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    request = broadcast(store, directory, keys, clock)
    daemon.admit()
    skip = {"fanout_cursor": cursor_before_last(store), "recipients": 4, "fanout_seal": "0" * 64}
    store.outbox.update_one({"_id": request["_id"]}, {"$set": skip})

    settle(daemon)

    assert sorted(provider.recipients()) == everyone()


def test_the_daemon_role_alone_may_write_spent_ids(db: Database[Doc]) -> None:
    from jobs.mongo import roles

    granted = roles.definitions(db.name)
    writers = [
        name
        for name, privileges in granted.items()
        for p in privileges
        if p["resource"]["collection"] == "sent_ids" and "insert" in p["actions"]
    ]
    assert writers == [roles.DAEMON]


@pytest.fixture
def flowroute() -> Iterator[FlowrouteSimulator]:
    simulator = FlowrouteSimulator("replay-access", "replay-secret", rate_per_second=None)
    with simulator:
        yield simulator


def test_an_operator_retry_of_an_unknown_message_sends_that_message_again_and_no_copy(
    store: OutboxStore,
    directory: Directory,
    clock: ManualClock,
    keys: KeyRing,
    flowroute: FlowrouteSimulator,
) -> None:
    client = FlowrouteClient(
        flowroute.url, SecretStr("replay-access"), SecretStr("replay-secret"), 0.5
    )
    config = DispatchConfig(lease_seconds=LEASE.total_seconds(), max_attempts=MAX_ATTEMPTS)
    daemon = Dispatcher(store, directory, client, CountingPacer(), clock, config, Signatures(keys))
    doc = signed(keys)
    store.outbox.insert_one(doc)
    flowroute.delay_next(3.0)  # Flowroute takes the message; its answer comes too late
    settle(daemon)
    assert outcome(store, doc["_id"]) == ("unknown", "timeout")

    # A writer queueing it again, or copying it (the same id as text signs the same), is not an
    # operator's retry: both refused.
    store.outbox.update_one({"_id": doc["_id"]}, {"$set": {"state": "queued"}})
    early_copy = producer_copy(doc, _id=str(doc["_id"]))
    store.outbox.insert_one(early_copy)
    next_repair(clock)
    settle(daemon)
    early = store.find(early_copy["_id"]) or {}
    assert (early["state"], early["error"]["code"]) == ("rejected", "replay")
    store.outbox.delete_one({"_id": early_copy["_id"]})
    assert outcome(store, doc["_id"]) == ("rejected", "replay")
    assert len(flowroute.messages()) == 1

    # The operator's retry (of the message as it ended: `unknown`).
    store.outbox.update_one(
        {"_id": doc["_id"]}, {"$set": {"state": "unknown"}, "$unset": {"error": ""}}
    )
    assert [d["_id"] for d in store.retry("ops:carol", [doc["_id"]], None, None)] == [doc["_id"]]
    late_copy = producer_copy(doc, _id=str(doc["_id"]))
    store.outbox.insert_one(late_copy)
    settle(daemon)

    assert outcome(store, doc["_id"]) == ("sent", None)
    late = store.find(late_copy["_id"]) or {}
    assert (late["state"], late["error"]["code"]) == ("rejected", "replay")
    assert [m.to for m in flowroute.messages()] == [RECIPIENT, RECIPIENT]
    record = store.spent.spent.find_one({"_id": signing.signed_id(doc)})
    assert record is not None  # spent again by the retry, and holding its 202
    assert (record["outcome"], record["provider_id"]) == ("sent", flowroute.messages()[1].id)
    assert [(r["by"], r["outcome"]) for r in record["releases"]] == [("ops:carol", None)]

    # Once sent again, deleting and inserting it again is a replay as before.
    store.outbox.delete_many({"_id": {"$in": [doc["_id"], late_copy["_id"]]}})
    store.status.delete_one({"_id": doc["_id"]})
    store.outbox.insert_one(producer_copy(doc))
    settle(daemon)
    assert outcome(store, doc["_id"]) == ("rejected", "replay")
    assert len(flowroute.messages()) == 2
