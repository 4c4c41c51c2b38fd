"""STOP, HELP and START end to end: Flowroute posts the text, the daemon records consent and
answers once, through the outbox, signed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from jobs.dispatch.confirm import Step
from jobs.dispatch.inbound import DEFAULT_HELP, DEFAULT_START, DEFAULT_STOP
from jobs.keys import KeyRing, Signatures
from jobs.rules import replies
from jobs.rules.keywords import Keyword
from jobs.simulator.server import FlowrouteSimulator
from tests.integration.helpers import numbers
from tests.integration.stack import SOURCE, Db, Stack, stack

STOP_TEXT = DEFAULT_STOP.replace("{program}", "sms-outbox")
HELP_TEXT = DEFAULT_HELP.replace("{program}", "sms-outbox")
START_TEXT = DEFAULT_START.replace("{program}", "sms-outbox")


@pytest.fixture
def loop(db: Db, simulator: FlowrouteSimulator, tmp_path: Path) -> Iterator[Stack]:
    keys = KeyRing(tmp_path / "keys")
    keys.create_user_key("ops")
    with stack(db, simulator, numbers(2), signatures=Signatures(keys)) as s:
        simulator.sms_callback = s.hooks + "/inbound"
        yield s


def texts_to(simulator: FlowrouteSimulator, number: str) -> list[tuple[str, str]]:
    return [(m.from_, m.body) for m in simulator.messages() if m.to == number]


def test_stop_opts_out_everywhere_with_evidence_and_is_confirmed_exactly_once(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _ = numbers(2)
    loop.enqueue(person)
    loop.drain()
    status, stop_id = simulator.send_inbound(person, SOURCE, "  Stop ")
    assert status == 200
    loop.drain()
    recipient = db["users"].find_one({"phone": person}) or {}
    evidence = recipient["opted_out"]
    assert (evidence["inbound_id"], evidence["text"], evidence["number"]) == (
        stop_id, "  Stop ", person,
    )  # fmt: skip
    assert evidence["at"] is not None
    assert texts_to(simulator, person) == [(SOURCE, "hello"), (SOURCE, STOP_TEXT)]
    reply_id = replies.message_id(Keyword.STOP, stop_id, person)
    reply = db["message_status"].find_one({"_id": reply_id}) or {}
    assert reply["state"] == "sent" and reply["to"] == person

    # Flowroute resends the same callback; the person texts STOP again; HELP; a new message.
    simulator.send_inbound(person, SOURCE, "  Stop ", message_id=stop_id)
    simulator.send_inbound(person, SOURCE, "UNSUBSCRIBE")
    simulator.send_inbound(person, SOURCE, "HELP")
    later = loop.enqueue(person, "news")
    loop.drain()
    assert len(texts_to(simulator, person)) == 2
    assert loop.state(later) == "rejected"
    outcomes = sorted(d["outcome"] for d in db["inbound"].find())
    assert outcomes == ["already_opted_out", "opted_out", "opted_out"]
    assert db["inbox"].find_one({"outcome": "duplicate"}) is not None


def test_start_opts_in_again_with_evidence_and_one_confirmation(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _ = numbers(2)
    _, stop_id = simulator.send_inbound(person, SOURCE, "STOP")
    loop.drain()
    _, start_id = simulator.send_inbound(person, SOURCE, "unstop")
    simulator.send_inbound(person, SOURCE, "YES")
    loop.drain()
    recipient = db["users"].find_one({"phone": person}) or {}
    assert recipient["verified"] is True
    # Nothing is erased: the opt-out stays, ended by the START that names it.
    assert recipient["opted_out"]["inbound_id"] == stop_id
    assert recipient["opted_in_again"]["inbound_id"] == start_id
    assert [e["inbound_id"] for e in recipient["opt_outs"]] == [stop_id]
    assert [e["inbound_id"] for e in recipient["opt_ins"]] == [start_id]
    assert (loop.directory.recipient(person) or {}).get("opted_out") is None
    assert [body for _, body in texts_to(simulator, person)] == [STOP_TEXT, START_TEXT]
    again = loop.enqueue(person, "welcome back")
    loop.drain()
    assert loop.state(again) == "sent"


def test_help_is_answered_once_a_day_and_other_texts_are_kept_unanswered(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _ = numbers(2)
    simulator.send_inbound(person, SOURCE, "help")
    loop.drain()
    simulator.send_inbound(person, SOURCE, "INFO")
    simulator.send_inbound(person, SOURCE, "what time is it?")
    loop.drain()
    assert texts_to(simulator, person) == [(SOURCE, HELP_TEXT)]
    kept = db["inbound"].find_one({"body": "what time is it?"}) or {}
    assert (kept["keyword"], kept["outcome"]) == (None, "stored")


def test_a_text_to_a_number_that_is_not_ours_is_kept_and_not_answered(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _ = numbers(2)
    simulator.send_inbound(person, "12065550999", "HELP")
    loop.drain()
    assert texts_to(simulator, person) == []
    assert (db["inbox"].find_one() or {})["outcome"] == "not_our_number"


def test_a_forged_stop_confirmation_is_rejected_by_its_signature(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _ = numbers(2)
    _, stop_id = simulator.send_inbound(person, SOURCE, "STOP")
    loop.drain()
    forged: dict[str, Any] = {
        "_id": "forged", "kind": "message", "user": replies.USER, "to": person, "from": SOURCE,
        "body": "buy now", "campaign": replies.campaign(Keyword.STOP, stop_id),
        "state": "queued", "due_at": loop.store.clock.now(), "attempts": 0, "rev": 1,
        "priority": 0, "signature": "00" * 32,
    }  # fmt: skip
    db["outbox"].insert_one(forged)
    # Written straight into the queue, it has no claim queue entry: the next repair finds it.
    deadline = time.monotonic() + 30
    while (db["outbox"].find_one({"_id": "forged"}) or {})["state"] != "rejected":
        assert time.monotonic() < deadline, "the forged reply was never found"
        loop.drain()
    assert [body for _, body in texts_to(simulator, person)] == [STOP_TEXT]


def test_an_opt_out_rate_over_five_percent_is_warned_about(
    loop: Stack, simulator: FlowrouteSimulator
) -> None:
    person, other = numbers(2)
    loop.enqueue(person)
    loop.enqueue(other)
    loop.drain()
    simulator.send_inbound(person, SOURCE, "STOP")
    loop.drain()
    with structlog.testing.capture_logs() as logs:
        loop.followup.check()
        loop.followup.check()
    warnings = [e for e in logs if e["event"] == "optout.rate_high"]
    assert len(warnings) == 1
    assert (warnings[0]["source"], warnings[0]["opt_outs"], warnings[0]["sent"]) == (SOURCE, 1, 2)


def test_forged_stop_and_start_pairs_get_at_most_five_replies_a_day(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _ = numbers(2)
    for _ in range(4):
        simulator.send_inbound(person, SOURCE, "STOP")
        loop.drain()
        simulator.send_inbound(person, SOURCE, "START")
        loop.drain()
    assert len(texts_to(simulator, person)) == 5
    assert (db["users"].find_one({"phone": person}) or {})["verified"] is True
    assert db["inbound"].count_documents({"outcome": {"$regex": "_unanswered$"}}) == 3


def test_a_stop_recorded_before_the_daemon_stopped_still_gets_its_confirmation(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, _ = numbers(2)
    now = loop.store.clock.now()
    stop_id = "mdr2-" + "5" * 32
    # The daemon died after recording the text and the opt-out, before queueing the reply.
    db["inbound"].insert_one({"_id": stop_id, "from": person, "to": SOURCE, "body": "STOP"})
    loop.directory.opt_out(person, now=now, reason="texted STOP", evidence={"inbound_id": stop_id})
    simulator.send_inbound(person, SOURCE, "STOP", message_id=stop_id)
    loop.drain()
    assert [body for _, body in texts_to(simulator, person)] == [STOP_TEXT]


def test_an_inbox_entry_that_trips_a_bug_is_marked_and_the_rest_go_on(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    def broken(entry: Any, lookups: Any) -> Step:
        raise RuntimeError("bug")

    person, _ = numbers(2)
    handler = loop.followup.inbound
    loop.followup.inbound = broken
    simulator.send_inbound(person, SOURCE, "HELP")
    loop.followup.inbound = handler
    db["inbox"].update_one({}, {"$set": {"kind": "inbound"}})
    loop.followup.inbound = broken
    loop.followup.apply_inbox()
    loop.followup.inbound = handler
    assert (db["inbox"].find_one() or {})["outcome"] == "crashed"
    simulator.send_inbound(person, SOURCE, "HELP")
    loop.drain()
    assert texts_to(simulator, person) == [(SOURCE, HELP_TEXT)]
