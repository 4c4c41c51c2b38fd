"""In-doubt sends settled against Flowroute's records: lost answers and dropped connections end
with every recipient accepted exactly once and nothing left `unknown`."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from jobs.model import State
from jobs.simulator.server import FlowrouteSimulator
from tests.integration.helpers import numbers, states, wait_for
from tests.integration.stack import Db, stack

# How long a request whose answer is lost is waited for: long enough that an answered request is
# never taken for a lost one on a loaded machine, short enough to keep the tests quick.
LOST_AFTER = 3.0


def test_lost_answers_and_dropped_connections_end_with_each_recipient_texted_once(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    recipients = numbers(30)
    simulator.set_faults(
        lose_answers=0.2, drop_before=0.1, drop_after=0.1, lost_answer_seconds=3, seed=8
    )
    with stack(db, simulator, recipients, timeout=1.0, max_attempts=12) as s:
        for number in recipients:
            s.enqueue(number)

        def settled() -> bool:
            s.drain()
            s.followup.check()
            counts = states(db)
            return counts["sent"] == len(recipients)

        s.drain()
        assert states(db)["unknown"] > 0, "the faults should have left some sends in doubt"
        wait_for(settled, 180, "every message to be sent")
    accepted = Counter(m.to for m in simulator.messages())
    assert accepted == Counter(recipients)
    statuses = list(db["message_status"].find({"kind": "message"}))
    assert {d["state"] for d in statuses} == {State.SENT.value}
    provider_ids = {d["provider_id"] for d in statuses}
    assert provider_ids == {m.id for m in simulator.messages()}
    reconciled = [d for d in db["outbox"].find({"reconciliation": {"$exists": True}})]
    assert {d["reconciliation"]["verdict"] for d in reconciled} <= {"found", "absent"}
    assert any(d["reconciliation"]["verdict"] == "found" for d in reconciled)
    assert any(d["reconciliation"]["verdict"] == "absent" for d in reconciled)


def test_a_failed_lookup_keeps_the_message_unknown_and_tries_again(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    (to,) = numbers(1)
    simulator.set_faults(drop_after=0.999999, seed=1)
    with stack(db, simulator, [to], timeout=LOST_AFTER) as s:
        doc_id = s.enqueue(to)
        s.drain()
        assert s.state(doc_id) == "unknown"
        simulator.set_faults()
        s.followup.records.url = "http://127.0.0.1:9/v2.1/messages"  # type: ignore[union-attr]
        s.followup.check()
        doc = db["outbox"].find_one({"_id": doc_id}) or {}
        assert doc["state"] == "unknown"
        assert doc["reconciliation"]["verdict"] == "lookup_failed"
        s.followup.records.url = simulator.url + "/v2.1/messages"  # type: ignore[union-attr]
        s.followup.check()
        assert s.state(doc_id) == "sent"
    assert len(simulator.messages()) == 1


def test_a_message_whose_request_never_arrived_is_queued_again_once(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    (to,) = numbers(1)
    simulator.set_faults(drop_before=0.999999, seed=1)
    with stack(db, simulator, [to], timeout=LOST_AFTER) as s:
        doc_id = s.enqueue(to)
        s.drain()
        assert s.state(doc_id) == "unknown"
        simulator.set_faults()
        wait_for(lambda: s.followup.check() > 0 and s.state(doc_id) == "queued", 30, "requeue")
        doc = db["outbox"].find_one({"_id": doc_id}) or {}
        assert doc["error"]["code"] == "reconciled"
        assert doc["reconciliation"]["verdict"] == "absent"
        assert s.followup.check() == 0
        s.drain()
        assert s.state(doc_id) == "sent"
    assert len(simulator.messages()) == 1


def test_a_worker_killed_mid_request_is_reconciled_from_its_ticket_window(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    (to,) = numbers(1)
    with stack(db, simulator, [to]) as s:
        doc_id = s.enqueue(to)
        (doc,) = s.store.claim(1, s.dispatcher.config.lease)
        doc = s.store.renew(doc, s.dispatcher.config.lease, in_flight=True) or {}
        assert s.store.guard.take(doc) is not None
        accepted = s.client.send(to, "12065550100", "hello")  # ...and then the worker died
        db["outbox"].update_one(
            {"_id": doc_id}, {"$set": {"lease_until": s.store.clock.now() - timedelta(seconds=1)}}
        )
        s.dispatcher.recover()
        assert s.state(doc_id) == "unknown"
        s.followup.check()
        final = db["message_status"].find_one({"_id": doc_id}) or {}
    assert (final["state"], final["provider_id"]) == ("sent", accepted)
    assert len(simulator.messages()) == 1


def test_an_old_message_flowroute_never_had_fails_instead_of_going_out_late(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    (to,) = numbers(1)
    with stack(db, simulator, [to]) as s:
        doc_id = s.enqueue(to)
        old = s.store.clock.now() - timedelta(days=3)
        db["outbox"].update_one(
            {"_id": doc_id}, {"$set": {"state": "unknown", "updated_at": old}, "$inc": {"rev": 1}}
        )
        s.followup.check()
        doc = db["outbox"].find_one({"_id": doc_id}) or {}
    assert (doc["state"], doc["error"]["code"]) == ("failed", "reconciled")
    assert simulator.messages() == []
