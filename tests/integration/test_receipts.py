"""Delivery receipts on the real server: through the webhook, out of order, twice, early, or
looked up when they never came."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobs.dispatch.receipts import ReceiptConfig
from jobs.simulator.server import FlowrouteSimulator
from tests.integration.helpers import numbers, wait_for
from tests.integration.stack import Db, stack


def status(db: Db, doc_id: Any) -> dict[str, Any]:
    return db["message_status"].find_one({"_id": doc_id}) or {}


def test_receipts_through_the_webhook_make_messages_delivered_and_undelivered(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    good, bad = numbers(2)
    with stack(db, simulator, [good, bad]) as s:
        first, second = s.enqueue(good), s.enqueue(bad)
        s.drain()
        ids = {m.to: m.id for m in simulator.messages()}
        simulator.post_receipts([ids[good]])
        simulator.post_receipts([ids[bad]], final_status="delivery failure", final_code=1201)
        s.drain()
        delivered, undelivered = status(db, first), status(db, second)
    assert delivered["state"] == "delivered"
    assert delivered["delivered_at"] is not None
    assert [r["level"] for r in delivered["receipts"]] == [1, 2]
    assert undelivered["state"] == "undelivered"
    assert undelivered["error"]["code"] == "carrier"
    assert "1201" in undelivered["error"]["detail"]
    assert undelivered["receipts"][-1]["status_code"] == "1201"


def test_reversed_and_duplicated_receipts_never_move_a_message_backwards(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    (to,) = numbers(1)
    with stack(db, simulator, [to]) as s:
        doc_id = s.enqueue(to)
        s.drain()
        simulator.post_receipts(reverse=True, duplicate=True)
        s.drain()
        assert s.state(doc_id) == "delivered"
        simulator.post_receipts(final_status="delivery failure", flat=True)
        s.drain()
        final = status(db, doc_id)
    assert final["state"] == "delivered"
    # Each distinct receipt kept once: level 2, level 1, then the late failure's two.
    assert [r["status"] for r in final["receipts"]].count("delivered") == 1
    assert db["inbox"].count_documents({"state": "applied"}) == 6


def test_a_receipt_for_an_unknown_id_is_kept_aside_then_applied_when_the_id_appears(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    (to,) = numbers(1)
    with stack(db, simulator, [to]) as s:
        doc_id = s.enqueue(to)
        s.drain()
        message_id = simulator.messages()[0].id
        # The 202 not recorded yet: the id is nowhere in the outbox.
        s.db["outbox"].update_one({"_id": doc_id}, {"$unset": {"provider_id": ""}})
        simulator.post_receipts()
        s.drain()
        assert db["inbox"].count_documents({"state": "waiting"}) == 2
        assert s.state(doc_id) == "sent"
        s.db["outbox"].update_one({"_id": doc_id}, {"$set": {"provider_id": message_id}})

        def applied() -> bool:
            s.followup.apply_inbox()
            return s.state(doc_id) == "delivered"

        wait_for(applied, 30, "the kept receipt to be applied")
    assert db["inbox"].count_documents({"state": "applied"}) == 2


def test_a_receipt_for_an_id_that_never_appears_is_orphaned_not_dropped(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    config = ReceiptConfig(unknown_id_retry=timedelta(0), unknown_id_horizon=timedelta(0))
    with stack(db, simulator, [], receipts=config) as s:
        s.db["inbox"].insert_one(
            {"kind": "dlr", "fields": {"provider_id": "mdr2-" + "0" * 32, "status": "delivered"},
             "received_at": s.store.clock.now() - timedelta(seconds=1)}
        )  # fmt: skip
        s.followup.apply_inbox()
    assert [e["state"] for e in db["inbox"].find()] == ["orphaned"]


def test_forged_inbox_entries_are_marked_invalid_and_move_nothing(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    with stack(db, simulator, []) as s:
        s.db["inbox"].insert_many(
            [{"kind": "dlr", "fields": {"provider_id": 5}}, {"kind": "other"}, {"fields": []}]
        )
        assert s.followup.apply_inbox() == 3
    assert {e["outcome"] for e in db["inbox"].find()} == {"invalid"}


def test_polling_finds_the_receipts_that_never_came(db: Db, simulator: FlowrouteSimulator) -> None:
    to, other = numbers(2)
    with stack(db, simulator, [to, other]) as s:
        delivered, waiting = s.enqueue(to), s.enqueue(other)
        s.drain()
        ids = {m.to: m.id for m in simulator.messages()}
        # Receipts posted to nowhere: only the records know.
        simulator.post_receipts([ids[to]], url="http://127.0.0.1:9/dlr")
        assert s.followup.check() == 2
        assert s.state(delivered) == "delivered"
        assert s.state(waiting) == "sent"
        polled = s.db["outbox"].find_one({"_id": waiting}) or {}
        assert polled["polls"] == 1 and polled["poll_at"] is not None
        lookups = s.followup.records.lookups  # type: ignore[union-attr]
        assert lookups == 2


def test_polling_stops_at_the_horizon_and_the_message_stays_sent(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    (to,) = numbers(1)
    config = ReceiptConfig(poll_after=timedelta(0), poll_horizon=timedelta(minutes=10))
    with stack(db, simulator, [to], receipts=config) as s:
        doc_id = s.enqueue(to)
        s.drain()
        assert s.followup.check() == 1
        past = s.store.clock.now() - timedelta(minutes=11)
        s.db["outbox"].update_one({"_id": doc_id}, {"$set": {"sent_at": past}})
        assert s.followup.check() == 0
    assert s.state(doc_id) == "sent"


def test_a_1110_receipt_is_undelivered_and_opts_the_recipient_out(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    (to,) = numbers(1)
    with stack(db, simulator, [to]) as s:
        doc_id = s.enqueue(to)
        s.drain()
        simulator.post_receipts(final_status="message buffered", final_code="1110")
        s.drain()
        later = s.enqueue(to, "again")
        s.drain()
        assert s.state(doc_id) == "undelivered"
        assert s.state(later) == "rejected"
    assert (db["users"].find_one({"phone": to}) or {})["opted_out"]["reason"] == (
        "flowroute 1110 receipt"
    )
