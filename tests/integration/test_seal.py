"""The daemon's seal, on the real server: a producer who may only insert into `outbox` (and holds
its own signing key, or none) writes documents that pose as ones the daemon already admitted,
and they go through intake like any other, count in no campaign, and suppress nobody."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from jobs.dispatch import receipts
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.dispatch.receipts import ReceiptConfig
from jobs.doubles.clock import ManualClock
from jobs.errors import OptedOutError
from jobs.keys import KeyRing, Signatures
from jobs.mongo import status as status_queries
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from jobs.rules import signing
from jobs.simulator.server import FlowrouteSimulator
from tests.integration.helpers import numbers
from tests.integration.stack import stack
from tests.unit.fakes import (
    LEASE,
    MAX_ATTEMPTS,
    RECIPIENT,
    RECIPIENT_2,
    CountingPacer,
    FakeProvider,
)

pytestmark = pytest.mark.server

SPELLED = "(206) 555-0103"
PERSON = "12065550103"


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    ring = KeyRing(tmp_path / "keys")
    for user in ("alice", "mallory"):
        ring.create_user_key(user)
    return ring


@pytest.fixture
def store(db: Database[Doc], clock: ManualClock, keys: KeyRing) -> OutboxStore:
    """The store as the daemon wires it: sealing with the daemon's key."""
    outbox = OutboxStore(db, clock, "none", sealer=Signatures(keys))
    outbox.ensure_indexes()
    return outbox


@pytest.fixture
def daemon(
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    clock: ManualClock,
    keys: KeyRing,
) -> Dispatcher:
    directory.grant("mallory", "12065550109")
    directory.add(PERSON, verified=True, now=clock.now())
    config = DispatchConfig(lease_seconds=LEASE.total_seconds(), max_attempts=MAX_ATTEMPTS)
    return Dispatcher(store, directory, provider, CountingPacer(), clock, config, Signatures(keys))


def signed(keys: KeyRing, user: str = "alice", **fields: Any) -> Doc:
    """A producer's document, signed with `user`'s own key."""
    doc: Doc = {"_id": ObjectId(), "user": user, "to": RECIPIENT, "body": "hello", **fields}
    key = keys.user_key(user)
    assert key is not None
    doc["signature"] = signing.sign(key, doc)
    return doc


def as_admitted(doc: Doc, clock: ManualClock, **fields: Any) -> Doc:
    """What the attacker adds: the fields of a document the daemon admitted long ago."""
    old = clock.now() - timedelta(hours=1)
    return {
        **doc, "state": "queued", "due_at": old, "attempts": 0, "rev": 1, "kind": "message",
        "priority": 0, "created_at": old, "updated_at": old, "synced": True, **fields,
    }  # fmt: skip


def settle(daemon: Dispatcher, rounds: int = 8) -> None:
    for _ in range(rounds):
        if daemon.run_once().idle:
            return


def test_a_document_inserted_already_queued_is_normalised_and_a_1110_lands_on_the_person(
    daemon: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    directory: Directory,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    doc = as_admitted(signed(keys, to=SPELLED), clock)
    store.outbox.insert_one(doc)
    provider.fail_next(OptedOutError("1110", f"recipient {PERSON} has opted out", 400))

    settle(daemon)

    assert provider.recipients() == [PERSON]  # the request went out with the normalised number
    person = directory.recipient(PERSON)
    assert person is not None and person.get("opted_out")
    assert store.outbox.count_documents({"to": SPELLED}) == 0
    assert store.projected(doc["_id"])["state"] == "failed"  # type: ignore[index]


def test_a_badly_sealed_document_and_an_expired_forged_claim_go_through_intake(
    daemon: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    forged_seal = as_admitted(signed(keys), clock, seal="0" * 64)
    expired = as_admitted(
        signed(keys, to=RECIPIENT_2), clock, state="sending", claim_token="x",
        lease_until=clock.now() - timedelta(minutes=1), in_flight=False, attempts=2**63 - 1,
    )  # fmt: skip
    store.outbox.insert_many([forged_seal, expired])

    settle(daemon)

    assert sorted(provider.recipients()) == sorted([RECIPIENT, RECIPIENT_2])
    for doc in (forged_seal, expired):
        now = store.find(doc["_id"])
        assert now is not None and now["state"] == "sent" and now["attempts"] == 1
        assert store.trusts(now)


def test_an_unsigned_document_posing_as_admitted_is_rejected_with_the_reason(
    daemon: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    doc = as_admitted({"_id": ObjectId(), "user": "alice", "to": RECIPIENT, "body": "hi"}, clock)
    store.outbox.insert_one(doc)

    settle(daemon)

    assert provider.calls == []
    found = store.projected(doc["_id"])
    assert found is not None and found["error"]["code"] == "signature"


def test_documents_carrying_a_final_state_do_not_forge_a_campaign_s_counts(
    daemon: Dispatcher, store: OutboxStore, keys: KeyRing, clock: ManualClock, db: Database[Doc]
) -> None:
    request = signed(keys, to=None, audience="verified", body="news")
    del request["to"]
    request["signature"] = signing.sign(keys.user_key("alice") or "", request)
    store.outbox.insert_one(request)
    settle(daemon)
    campaign = str(request["_id"])
    honest = status_queries.campaign(db, campaign)
    forged = [
        as_admitted(
            {"_id": f"{campaign}:1312555{n:04d}", "user": "alice", "to": f"1312555{n:04d}",
             "body": "news", "campaign": campaign},
            clock, state=state, synced=False, provider_id=f"mdr2-{n}",
        )
        for n, state in enumerate(["delivered"] * 5 + ["undelivered"] * 5)
    ]  # fmt: skip
    store.outbox.insert_many(forged)

    clock.advance(60)
    daemon.recover()
    store.resync(limit=100)
    settle(daemon)

    after = status_queries.campaign(db, campaign)
    assert after["states"] == honest["states"] == {"sent": 3}
    assert after["delivery"]["delivered"] == after["delivery"]["undelivered"] == 0
    assert store.outbox.count_documents({"campaign": campaign, "synced": False}) == 0


@pytest.mark.parametrize("squat_state", [None, "sent", "rejected"])
def test_a_squatted_broadcast_message_id_does_not_suppress_its_recipient(
    daemon: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
    squat_state: str | None,
) -> None:
    request = signed(keys, body="news", audience="verified")
    del request["to"]
    request["signature"] = signing.sign(keys.user_key("alice") or "", request)
    squat = signed(keys, "mallory", _id=f"{request['_id']}:{RECIPIENT}", body="squat")
    if squat_state is not None:
        squat = as_admitted(squat, clock, state=squat_state)
    store.outbox.insert_one(squat)  # before the broadcast is even admitted
    store.outbox.insert_one(request)

    settle(daemon)

    sent = {to: body for to, _, body in provider.calls}
    assert sent.get(RECIPIENT) == "news"
    assert "squat" not in sent.values()
    message = store.projected(f"{request['_id']}:{RECIPIENT}")
    assert message is not None and message["state"] == "sent" and message["user"] == "alice"


def test_producer_status_fields_never_reach_the_status_copy(
    daemon: Dispatcher, store: OutboxStore, keys: KeyRing, clock: ManualClock
) -> None:
    forged = {
        "cancelled": {"by": "ops", "at": clock.now()}, "history": [{"state": "delivered"}],
        "receipts": [{"status": "delivered"}], "delivered_at": clock.now(),
        "final_at": clock.now(), "reconciliation": {"verdict": "found"},
        "reply_to": "mdr2-x", "provider_id": "mdr2-forged", "recipients": 9,
    }  # fmt: skip
    doc = signed(keys)
    store.outbox.insert_one({**doc, **forged})

    settle(daemon)

    found = store.projected(doc["_id"])
    assert found is not None and found["state"] == "sent"
    assert not set(forged) - {"provider_id"} & found.keys()
    assert found["provider_id"] != "mdr2-forged"


def test_a_priority_above_the_grant_is_lowered_at_admission_and_still_verifies(
    daemon: Dispatcher, store: OutboxStore, directory: Directory, keys: KeyRing
) -> None:
    directory.grant("mallory", "12065550109", max_priority=40)
    mine = signed(keys, priority=100)
    theirs = signed(keys, "mallory", priority=100, to=RECIPIENT_2)
    modest = signed(keys, "mallory", priority=10, to=RECIPIENT_2, body="modest")
    store.outbox.insert_many([mine, theirs, modest])

    settle(daemon)

    for doc, granted in ((mine, 0), (theirs, 40), (modest, 10)):
        found = store.find(doc["_id"])
        assert found is not None and found["state"] == "sent"
        assert found["priority"] == granted
    assert store.find(mine["_id"])["priority_requested"] == 100  # type: ignore[index]
    assert "priority_requested" not in store.find(modest["_id"])  # type: ignore[operator]


def test_a_message_posing_as_unknown_is_not_reconciled_but_goes_through_intake(
    db: Database[Doc], simulator: FlowrouteSimulator, tmp_path: Path
) -> None:
    keys = KeyRing(tmp_path / "stack-keys")
    keys.create_user_key("ops")
    (to,) = numbers(1)
    with stack(db, simulator, [to], signatures=Signatures(keys)) as s:
        doc: Doc = {"_id": ObjectId(), "user": "ops", "to": f"+1 {to[1:4]} {to[4:7]} {to[7:]}"}
        doc["body"] = "posing"
        doc["signature"] = signing.sign(keys.user_key("ops") or "", doc)
        old = datetime.now(UTC) - timedelta(hours=2)
        db["outbox"].insert_one(
            {**doc, "state": "unknown", "attempts": 1, "rev": 2, "updated_at": old, "synced": True}
        )

        assert s.followup.check() >= 1  # reconciliation meets it and sends it to intake
        assert (db["outbox"].find_one({"_id": doc["_id"]}) or {}).get("state") is None
        s.dispatcher.admit()
        s.drain()

        assert s.state(doc["_id"]) == "sent"
    assert [(m.to, m.body) for m in simulator.messages()] == [(to, "posing")]


def test_a_receipt_never_reaches_a_document_posing_with_a_real_provider_id(
    daemon: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    first_id = f"mdr2-{1:032x}"  # what the fake provider answers the first send with
    forged = as_admitted(
        {"_id": ObjectId(), "user": "alice", "to": PERSON, "body": "x"}, clock,
        state="sent", provider_id=first_id, sent_at=clock.now(),
    )  # fmt: skip
    store.outbox.insert_one(forged)  # before the real message, so first in natural order
    real = signed(keys)
    store.outbox.insert_one(real)
    settle(daemon)
    assert store.find(real["_id"])["provider_id"] == first_id  # type: ignore[index]

    receipt = {
        "provider_id": first_id, "level": 2, "status": "undelivered", "status_code": "1110",
        "description": "opted out", "timestamp": clock.now(),
    }  # fmt: skip
    DeliveryStore(store, directory).apply_receipt(receipt)

    assert store.projected(real["_id"])["state"] == "undelivered"  # type: ignore[index]
    assert (directory.recipient(RECIPIENT) or {}).get("opted_out")
    assert not (directory.recipient(PERSON) or {}).get("opted_out")
    assert store.find(forged["_id"])["state"] == "sent"  # type: ignore[index]


class NoLookups:
    """Message records that must not be asked."""

    def get(self, provider_id: str) -> dict[str, Any]:
        raise AssertionError(f"looked up {provider_id}")

    def between(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        raise AssertionError("listed records")


def test_polling_spends_no_lookup_on_a_document_posing_as_sent(
    store: OutboxStore, directory: Directory, keys: KeyRing, clock: ManualClock
) -> None:
    forged = as_admitted(
        signed(keys), clock, state="sent", provider_id="mdr2-x", sent_at=clock.now()
    )
    store.outbox.insert_one(forged)

    polled = receipts.poll(
        DeliveryStore(store, directory), NoLookups(), clock, ReceiptConfig(poll_after=timedelta(0))
    )

    assert polled == 1
    assert "state" not in store.find(forged["_id"])  # type: ignore[operator]
