"""JOIN then YES over the simulator's inbound path, on the real server: each text is believed
only once Flowroute's records confirm it; a forged one verifies nothing and texts nobody."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jobs.clock import SystemClock
from jobs.dispatch.inbound import InboundHandler, ReplyTexts
from jobs.keys import KeyRing, Signatures
from jobs.mongo.inbound import InboundLog
from jobs.mongo.optin import OptInStore
from jobs.optin.keywords import KeywordOptIn
from jobs.optin.service import OptInConfig, SignUp
from jobs.rules import identity
from jobs.simulator.callbacks import inbound_document, new_id
from jobs.simulator.server import FlowrouteSimulator
from tests.integration.helpers import numbers
from tests.integration.stack import SOURCE, Db, Stack, stack

CONFIG = OptInConfig()


@pytest.fixture
def loop(db: Db, simulator: FlowrouteSimulator, tmp_path: Path) -> Iterator[Stack]:
    keys = KeyRing(tmp_path / "keys")
    keys.create_user_key("ops")
    signatures = Signatures(keys)
    with stack(db, simulator, [], signatures=signatures) as s:
        simulator.sms_callback = s.hooks + "/inbound"
        clock = SystemClock()
        store = OptInStore(db)
        store.ensure_indexes()
        signup = SignUp(store, s.store, s.directory, keys, clock, CONFIG)
        s.followup.inbound = InboundHandler(
            s.store, s.directory, InboundLog(db), clock, ReplyTexts(), signatures,
            optin=KeywordOptIn(signup),
        )  # fmt: skip
        yield s


def texts_to(simulator: FlowrouteSimulator, number: str) -> list[str]:
    return [m.body for m in simulator.messages() if m.to == number]


def forge(stack: Stack, person: str, body: str, message_id: str | None = None) -> int:
    """POST an inbound text to the webhook as anyone who found its URL could."""
    document = inbound_document(
        message_id or new_id(), person, SOURCE, body, SystemClock().now(), flat=False
    )
    response = requests.post(stack.hooks + "/inbound", json=document, timeout=5)
    return response.status_code


def test_join_then_yes_over_the_inbound_path_verifies_with_both_ids(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    (person,) = numbers(1, start=40)
    _, join_id = simulator.send_inbound(person, SOURCE, "Join")
    loop.drain()
    assert texts_to(simulator, person) == [CONFIG.program.prompt_text()]
    assert not (db["users"].find_one({"phone": person}) or {}).get("verified")
    _, yes_id = simulator.send_inbound(person, SOURCE, "yes!")
    loop.drain()
    user = db["users"].find_one({"phone": person}) or {}
    consent = user["consent"]
    assert user["verified"] is True and consent["source"] == "keyword"
    assert (consent["join_inbound_id"], consent["yes_inbound_id"]) == (join_id, yes_id)
    prompt = next(m for m in simulator.messages() if m.to == person)
    assert consent["prompt_provider_id"] == prompt.id
    assert consent["terms"]["sha256"] == CONFIG.program.terms_record()["sha256"]
    assert texts_to(simulator, person) == [
        CONFIG.program.prompt_text(), CONFIG.program.welcome_text()
    ]  # fmt: skip
    # The same YES again, and a new one: no second welcome.
    simulator.send_inbound(person, SOURCE, "yes!", message_id=yes_id)
    simulator.send_inbound(person, SOURCE, "YES")
    loop.drain()
    assert len(texts_to(simulator, person)) == 2


def test_a_forged_yes_verifies_nothing_and_texts_nobody(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    person, stranger = numbers(2, start=50)
    # A real JOIN opens the window; the YES is forged (Flowroute has no record of its id).
    simulator.send_inbound(person, SOURCE, "JOIN")
    loop.drain()
    sent = len(simulator.messages())
    assert forge(loop, person, "YES") == 200
    assert forge(loop, stranger, "JOIN") == 200
    assert forge(loop, stranger, "YES") == 200
    # A forged text that reuses a real id with other content is contradicted by the record.
    _, real_id = simulator.send_inbound(stranger, SOURCE, "hello there", url="http://127.0.0.1:9/")
    assert forge(loop, stranger, "JOIN", message_id=real_id) == 200
    loop.drain()
    # Records still missing are tried again within the grace period; push them past it.
    db["inbox"].update_many({"state": "waiting"}, {"$set": {"retry_at": SystemClock().now()}})
    db["inbox"].update_many({}, {"$set": {"received_at": SystemClock().now().replace(year=2020)}})
    loop.drain()
    assert len(simulator.messages()) == sent
    for number in (person, stranger):
        assert not (db["users"].find_one({"phone": number}) or {}).get("verified")
    outcomes = [d.get("outcome") for d in db["inbound"].find({"body": {"$in": ["YES", "JOIN"]}})]
    assert outcomes == ["join_prompted"], "only the real JOIN was acted on"
    assert db["inbox"].count_documents({"reason": "unverified"}) == 4


def test_a_yes_without_a_join_enrols_nobody(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    (person,) = numbers(1, start=60)
    simulator.send_inbound(person, SOURCE, "YES")
    loop.drain()
    assert simulator.messages() == []
    assert db["users"].find_one({"phone": person}) is None


def test_an_opted_out_number_joins_again_by_text_and_its_opt_out_stays_on_record(
    loop: Stack, simulator: FlowrouteSimulator, db: Db
) -> None:
    (person,) = numbers(1, start=70)
    simulator.send_inbound(person, SOURCE, "STOP")
    loop.drain()
    simulator.send_inbound(person, SOURCE, "JOIN")
    loop.drain()
    simulator.send_inbound(person, SOURCE, "YES")
    loop.drain()
    user = db["users"].find_one({"phone": person}) or {}
    assert user["verified"] is True and identity.active_opt_out(user) is None
    (earlier,) = user["opt_outs"]
    assert earlier["reason"] == "texted STOP" and earlier["confirmed"] is True
    assert user["opted_in_again"]["ends"] == identity.opt_out_key(user["opted_out"])
    assert texts_to(simulator, person)[-1] == CONFIG.program.welcome_text()


def test_join_is_limited_per_number(loop: Stack, simulator: FlowrouteSimulator, db: Db) -> None:
    (person,) = numbers(1, start=80)
    for _ in range(4):
        simulator.send_inbound(person, SOURCE, "JOIN")
    loop.drain()
    assert texts_to(simulator, person) == [CONFIG.program.prompt_text()] * 3
    outcomes = sorted(d["outcome"] for d in db["inbound"].find({"from": person}))
    assert outcomes == ["join_number_hourly"] + ["join_prompted"] * 3
