"""Callbacks as an attacker who knows the webhook URL posts them: invented ids, no ids, and real
ids taken from Flowroute's records. Only what Flowroute's record confirms has consequences."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from jobs import producer
from jobs.dispatch.inbound import DEFAULT_HELP, DEFAULT_START, DEFAULT_STOP
from jobs.dispatch.receipts import ReceiptConfig
from jobs.errors import RetryableError, StoreRefused
from jobs.keys import KeyRing, Signatures
from jobs.rules.confirm import ConfirmConfig
from jobs.simulator.server import FlowrouteSimulator
from scheduler.daemon import Daemon
from tests.integration.helpers import numbers, wait_for
from tests.integration.stack import SOURCE, Db, Stack, stack

STOP_TEXT = DEFAULT_STOP.replace("{program}", "sms-outbox")
HELP_TEXT = DEFAULT_HELP.replace("{program}", "sms-outbox")
START_TEXT = DEFAULT_START.replace("{program}", "sms-outbox")
STRANGER = "12065550108"
QUICK = ConfirmConfig(lookups_per_cycle=10, retry=timedelta(milliseconds=50),
                      visible_within=timedelta(0))  # fmt: skip


@pytest.fixture
def keys(tmp_path: Path) -> Signatures:
    ring = KeyRing(tmp_path / "keys")
    ring.create_user_key("ops")
    return Signatures(ring)


@pytest.fixture
def loop(db: Db, simulator: FlowrouteSimulator, keys: Signatures) -> Iterator[Stack]:
    with stack(db, simulator, numbers(3), signatures=keys) as s:
        simulator.sms_callback = s.hooks + "/inbound"
        yield s


def invented() -> str:
    return "mdr2-" + uuid.uuid4().hex


def inbound(number: str, body: str, message_id: str | None = None, *, flat: bool = False) -> Any:
    """An inbound callback as an attacker writes one: JSON:API or flat, with or without an id."""
    attributes = {"from": number, "to": SOURCE, "body": body, "direction": "inbound"}
    if flat:
        return {**attributes, **({"id": message_id} if message_id else {})}
    data: dict[str, Any] = {"type": "message", "attributes": attributes}
    if message_id:
        data["id"] = message_id
    return {"data": data}


def receipt(message_id: str, status: str, code: Any = None) -> Any:
    attributes = {"level": 2, "status": status, "status_code": code,
                  "timestamp": "2026-01-01T00:00:00.00Z"}  # fmt: skip
    return {"data": {"id": message_id, "type": "delivery_receipt", "attributes": attributes}}


def post(s: Stack, path: str, document: Any) -> int:
    return requests.post(s.hooks + path, json=document, timeout=5).status_code


def texts_to(simulator: FlowrouteSimulator, number: str) -> list[str]:
    return [m.body for m in simulator.messages() if m.to == number]


def broadcast(s: Stack, keys: Signatures, body: str) -> None:
    key = keys.keys.user_key("ops")
    producer.broadcast(s.store, user="ops", body=body, now=s.store.clock.now(), sign_key=key)
    s.drain()


def unverified(db: Db) -> list[dict[str, Any]]:
    return list(db["inbox"].find({"reason": "unverified"}))


def test_forged_start_for_an_opted_out_person_and_a_stranger_then_a_broadcast_texts_neither(
    loop: Stack, simulator: FlowrouteSimulator, db: Db, keys: Signatures
) -> None:
    person, friend, _ = numbers(3)
    _, stop_id = simulator.send_inbound(person, SOURCE, "STOP")
    loop.drain()
    (confirmation,) = [m for m in simulator.messages() if m.to == person]
    forged = [
        inbound(person, "yes", flat=True),
        inbound("+1 206 555 0108", "yes", flat=True),
        inbound(person, "START", invented()),
        inbound(STRANGER, "subscribe", invented()),
        inbound(person, "YES", confirmation.id),  # a real id: our own reply to them
        inbound(person, "start", stop_id),  # a real id: their STOP, replayed with another body
        inbound(STRANGER, "START", stop_id, flat=True),
    ]
    assert [post(loop, "/inbound", doc) for doc in forged] == [200] * len(forged)
    loop.drain()
    broadcast(loop, keys, "Pool opens at 9")

    assert texts_to(simulator, person) == [STOP_TEXT]
    assert texts_to(simulator, STRANGER) == []
    assert texts_to(simulator, friend) == ["Pool opens at 9"]
    assert db["users"].count_documents({"phone": {"$regex": "5550108$"}}) == 0
    kept = db["users"].find_one({"phone": person}) or {}
    assert kept["opted_out"]["inbound_id"] == stop_id and "opted_in_again" not in kept
    assert len(unverified(db)) == len(forged)
    assert db["inbound"].count_documents({}) == 1  # only the STOP Flowroute has


def test_a_forged_help_or_stop_texts_nobody_and_other_traffic_goes_on(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, friend, _ = numbers(3)
    first = loop.enqueue(friend, "hello")
    loop.drain()
    (sent,) = simulator.messages()
    forged = [
        inbound(friend, "HELP", invented()),
        inbound(friend, "info", flat=True),
        inbound(friend, "HELP", sent.id),  # a real id, of an outbound message
        inbound(STRANGER, "STOP", invented()),
        inbound(STRANGER, "stop", flat=True),
    ]
    assert [post(loop, "/inbound", doc) for doc in forged] == [200] * len(forged)
    later = loop.enqueue(person, "still on")
    loop.drain()

    assert texts_to(simulator, friend) == ["hello"]
    assert texts_to(simulator, STRANGER) == []
    assert texts_to(simulator, person) == ["still on"]
    assert (loop.state(first), loop.state(later)) == ("sent", "sent")
    # STOP is honoured even unconfirmed (the safe side), but never answered.
    stranger = loop.directory.recipient(STRANGER) or {}
    assert stranger["verified"] is False and stranger["opted_out"]["confirmed"] is False
    outcomes = sorted(str(e.get("outcome")) for e in unverified(db))
    assert outcomes == ["None"] * 3 + ["already_opted_out_unconfirmed", "opted_out_unconfirmed"]


def test_a_real_stop_is_confirmed_and_answered_exactly_once(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _, _ = numbers(3)
    _, stop_id = simulator.send_inbound(person, SOURCE, "Stop")
    loop.drain()
    simulator.send_inbound(person, SOURCE, "Stop", message_id=stop_id)  # Flowroute resends
    post(loop, "/inbound", inbound(person, "STOP", invented()))  # and someone forges one
    loop.drain()
    assert texts_to(simulator, person) == [STOP_TEXT]
    evidence = (loop.directory.recipient(person) or {})["opted_out"]
    assert (evidence["inbound_id"], evidence["confirmed"]) == (stop_id, True)
    history = (db["users"].find_one({"phone": person}) or {})["opt_outs"]
    assert [(e["inbound_id"], e["confirmed"]) for e in history] == [(stop_id, True)]


def test_a_stop_is_honoured_before_its_record_appears_and_answered_once_it_does(
    db: Db, simulator: FlowrouteSimulator, keys: Signatures
) -> None:
    person, _, _ = numbers(3)
    slow = ConfirmConfig(retry=timedelta(milliseconds=50), visible_within=timedelta(hours=1))
    config = ReceiptConfig(poll_after=timedelta(0), confirm=slow)
    with stack(db, simulator, numbers(3), signatures=keys, receipts=config) as s:
        stop_id = invented()
        assert post(s, "/inbound", inbound(person, "STOP", stop_id)) == 200
        s.drain()
        assert (s.directory.recipient(person) or {})["opted_out"]["confirmed"] is False
        later = s.enqueue(person, "news")
        s.drain()
        assert s.state(later) == "rejected"
        assert texts_to(simulator, person) == []
        pending = db["inbox"].find_one() or {}
        assert (pending["state"], pending["reason"]) == ("waiting", "unverified")

        simulator.record_inbound(person, SOURCE, "STOP", message_id=stop_id)

        def answered() -> bool:
            s.drain()
            return texts_to(simulator, person) == [STOP_TEXT]

        wait_for(answered, 20, "the confirmed STOP's reply")
        s.drain()
    assert texts_to(simulator, person) == [STOP_TEXT]
    assert (s.directory.recipient(person) or {})["opted_out"]["confirmed"] is True
    confirmed = db["inbox"].find_one() or {}
    assert (confirmed["state"], confirmed["outcome"]) == ("applied", "opted_out")
    assert "reason" not in confirmed


class Flaky:
    """Flowroute's records, failing the first `failures` lookups as a 503 would."""

    def __init__(self, records: Any, failures: int) -> None:
        self.records, self.failures, self.calls = records, failures, 0

    def get(self, provider_id: str) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetryableError("503", "record lookup refused")
        return dict(self.records.get(provider_id))

    def between(self, *args: Any) -> Any:
        return self.records.between(*args)


def test_a_lookup_that_fails_is_retried_with_backoff(
    db: Db, simulator: FlowrouteSimulator, keys: Signatures
) -> None:
    person, _, _ = numbers(3)
    config = ReceiptConfig(poll_after=timedelta(0), confirm=QUICK)
    with stack(db, simulator, numbers(3), signatures=keys, receipts=config) as s:
        simulator.sms_callback = s.hooks + "/inbound"
        flaky = Flaky(s.followup.records, failures=2)
        s.followup.lookups.records = flaky
        simulator.send_inbound(person, SOURCE, "HELP")
        s.followup.apply_inbox()
        entry = db["inbox"].find_one() or {}
        assert (entry["state"], entry["tries"]) == ("waiting", 1)
        assert entry["retry_at"] > entry["received_at"]
        assert texts_to(simulator, person) == []

        def answered() -> bool:
            s.drain()
            return texts_to(simulator, person) == [HELP_TEXT]

        wait_for(answered, 20, "the HELP reply after the lookups recover")
    assert flaky.calls == 3
    assert (db["inbox"].find_one() or {})["outcome"] == "replied"


def test_start_gives_back_only_consent_an_opt_out_ended_and_keeps_the_history(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _, _ = numbers(3)
    newcomer = "13125550177"
    loop.directory.add(newcomer, verified=False, now=loop.store.clock.now())
    # Real texts, confirmed by Flowroute, from people who never gave consent: nothing happens.
    simulator.send_inbound(newcomer, SOURCE, "START")
    simulator.send_inbound(STRANGER, SOURCE, "yes")
    loop.drain()
    assert texts_to(simulator, newcomer) == texts_to(simulator, STRANGER) == []
    assert (loop.directory.recipient(newcomer) or {})["verified"] is False
    assert loop.directory.recipient(STRANGER) is None

    _, first_stop = simulator.send_inbound(person, SOURCE, "STOP")
    loop.drain()
    _, start_id = simulator.send_inbound(person, SOURCE, "START")
    loop.drain()
    _, second_stop = simulator.send_inbound(person, SOURCE, "STOP")
    loop.drain()
    # The latest event is the truth: opted out again.
    offer = loop.enqueue(person, "offer")
    loop.drain()
    assert loop.state(offer) == "rejected"
    record = db["users"].find_one({"phone": person}) or {}
    assert [e["inbound_id"] for e in record["opt_outs"]] == [first_stop, second_stop]
    assert [e["inbound_id"] for e in record["opt_ins"]] == [start_id]
    assert record["opt_ins"][0]["ends"]["inbound_id"] == first_stop
    assert texts_to(simulator, person) == [STOP_TEXT, START_TEXT, STOP_TEXT]

    simulator.send_inbound(person, SOURCE, "unstop")
    loop.drain()
    welcome = loop.enqueue(person, "welcome back")
    loop.drain()
    assert loop.state(welcome) == "sent"
    assert texts_to(simulator, person) == [STOP_TEXT, START_TEXT, STOP_TEXT, START_TEXT,
                                           "welcome back"]  # fmt: skip


def test_forged_receipts_for_real_ids_change_nothing_until_flowroute_agrees(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, friend, _ = numbers(3)
    first, other = loop.enqueue(person), loop.enqueue(friend)
    loop.drain()
    ids = {m.to: m.id for m in simulator.messages()}
    forged = [
        receipt(ids[person], "delivery failure", 1201),
        receipt(ids[person], "message buffered", "1110"),
        receipt(ids[person], "expired"),
        receipt(invented(), "delivered"),
    ]
    assert [post(loop, "/dlr", doc) for doc in forged] == [200] * len(forged)
    loop.drain()
    assert loop.state(first) == "sent"
    assert (loop.directory.recipient(person) or {}).get("opted_out") is None
    again = loop.enqueue(person, "again")
    loop.drain()
    assert loop.state(again) == "sent"
    assert len(unverified(db)) == 3
    assert db["inbox"].count_documents({"state": "waiting"}) == 1  # no message of ours has it

    # What Flowroute really says is applied: a delivery failure for one, delivered for the other.
    simulator.post_receipts([ids[person]], final_status="delivery failure", final_code=1201)
    simulator.post_receipts([ids[friend]])
    loop.drain()
    assert (loop.state(first), loop.state(other)) == ("undelivered", "delivered")
    assert texts_to(simulator, person) == ["hello", "again"]


def test_a_flood_of_forged_receipts_does_not_delay_a_stop(
    db: Db, simulator: FlowrouteSimulator, keys: Signatures
) -> None:
    person, friend, _ = numbers(3)
    config = ReceiptConfig(poll_after=timedelta(0), confirm=ConfirmConfig(lookups_per_cycle=2))
    with stack(db, simulator, numbers(3), signatures=keys, receipts=config) as s:
        simulator.sms_callback = s.hooks + "/inbound"
        s.enqueue(friend)
        s.drain()
        (sent,) = simulator.messages()
        with requests.Session() as session:
            for i in range(300):
                forged = receipt(sent.id if i % 2 else invented(), "delivery failure", 1201)
                assert session.post(s.hooks + "/dlr", json=forged, timeout=5).status_code == 200
        simulator.send_inbound(person, SOURCE, "STOP")
        records = s.followup.records
        before = records.lookups  # type: ignore[union-attr]

        s.followup.apply_inbox()  # one cycle's inbox step

        spent = records.lookups - before  # type: ignore[union-attr]
        assert (s.directory.recipient(person) or {})["opted_out"]["confirmed"] is True
        assert spent <= 2
        s.dispatcher.run_once()
    assert texts_to(simulator, person) == [STOP_TEXT]
    assert texts_to(simulator, friend) == ["hello"]


def test_the_inbox_is_applied_even_when_the_send_step_fails(
    loop: Stack, simulator: FlowrouteSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    person, _, _ = numbers(3)

    def claim_fails(*args: Any) -> Any:
        raise StoreRefused("claim refused", code=2)

    monkeypatch.setattr(loop.store, "claim", claim_fails)
    simulator.send_inbound(person, SOURCE, "STOP")
    daemon = Daemon(loop.dispatcher, 0.1, followup=loop.followup)
    with pytest.raises(StoreRefused):
        daemon._run_once()
    assert (loop.directory.recipient(person) or {})["opted_out"]["confirmed"] is True


def test_a_real_stop_after_a_forged_one_becomes_the_evidence_and_is_answered_once(
    loop: Stack, simulator: FlowrouteSimulator
) -> None:
    person, _, _ = numbers(3)
    forged = invented()
    post(loop, "/inbound", inbound(person, "STOP", forged))
    loop.drain()
    assert (loop.directory.recipient(person) or {})["opted_out"]["inbound_id"] == forged
    _, real = simulator.send_inbound(person, SOURCE, "STOP")
    loop.drain()
    evidence = (loop.directory.recipient(person) or {})["opted_out"]
    assert (evidence["inbound_id"], evidence["confirmed"]) == (real, True)
    assert texts_to(simulator, person) == [STOP_TEXT]
