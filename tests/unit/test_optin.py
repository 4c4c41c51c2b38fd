"""Sign-up by code: codes texted without consent, confirmed by the phone, limits against SMS
pumping; on the in-memory database with a manual clock and the real send cycle."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.keys import KeyRing, Signatures
from jobs.mongo.directory import Directory
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import Doc, OutboxStore
from jobs.optin import messages
from jobs.optin.keywords import KeywordOptIn
from jobs.optin.service import OptInConfig, SignUp
from jobs.rules import optin, signing
from jobs.rules.optin import Kind, Limits, Refusal
from tests.unit.fakes import (
    LEASE,
    RECIPIENT,
    SENDER,
    UNKNOWN,
    UNVERIFIED,
    CountingPacer,
    FakeProvider,
)

CLIENT, AGENT = "203.0.113.7", "Mozilla/5.0 (test)"


@pytest.fixture
def clock() -> ManualClock:
    """Today: the TTL indexes of the opt-in collections purge by the real date."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    ring = KeyRing(tmp_path / "keys")
    ring.create_user_key("alice")
    return ring


@pytest.fixture
def signup(
    db: Database[Doc], store: OutboxStore, directory: Directory, keys: KeyRing, clock: ManualClock
) -> SignUp:
    optins = OptInStore(db)
    optins.ensure_indexes()
    return SignUp(optins, store, directory, keys, clock, OptInConfig(number=SENDER))


@pytest.fixture
def cycle(
    store: OutboxStore, directory: Directory, provider: FakeProvider, clock: ManualClock,
    keys: KeyRing,
) -> Dispatcher:  # fmt: skip
    config = DispatchConfig(lease_seconds=LEASE.total_seconds(), max_attempts=3)
    return Dispatcher(store, directory, provider, CountingPacer(), clock, config, Signatures(keys))


def texts_to(provider: FakeProvider, number: str) -> list[str]:
    return [body for to, _, body in provider.calls if to == number]


def code_in(body: str) -> str:
    found = re.search(r"\b(\d{6})\b", body)
    assert found, body
    return found.group(1)


def ask(signup: SignUp, number: str = UNKNOWN, client: str = CLIENT) -> Any:
    return signup.request(number, True, client, AGENT)


def test_a_code_goes_to_a_number_without_consent_and_confirming_it_verifies_with_evidence(
    signup: SignUp, cycle: Dispatcher, provider: FakeProvider, db: Database[Doc]
) -> None:
    answer = ask(signup, "(312) 555-0177")
    assert answer.refusal is None and answer.number == UNKNOWN
    cycle.run_once()
    (text,) = texts_to(provider, UNKNOWN)
    assert provider.calls[0][1] == SENDER
    stored = db["optin_codes"].find_one({"_id": answer.request_id}) or {}
    assert code_in(text) not in str(stored)  # hashed, never kept as typed
    done = signup.confirm(answer.request_id, "3125550177", code_in(text), "198.51.100.2", AGENT)
    assert done.refusal is None
    user = db["users"].find_one({"phone": UNKNOWN}) or {}
    consent = user["consent"]
    assert user["verified"] is True and consent["source"] == "web"
    assert (consent["client"], consent["requested_from"]) == ("198.51.100.2", CLIENT)
    assert consent["user_agent"] == AGENT
    terms = signup.config.program.terms_record()
    assert consent["terms"] == terms and len(terms["sha256"]) == 64
    sent = db["outbox"].find_one({"_id": consent["code_message_id"]}) or {}
    assert consent["code_provider_id"] == sent["provider_id"]
    cycle.run_once()
    cycle.run_once()
    welcome = texts_to(provider, UNKNOWN)[1:]
    assert welcome == [signup.config.program.welcome_text()]
    assert "STOP" in welcome[0] and "rates" in welcome[0]


def test_a_code_is_one_text_per_request_on_the_reply_lane_signed_by_the_daemon(
    signup: SignUp, db: Database[Doc], keys: KeyRing
) -> None:
    answer = ask(signup)
    (doc,) = list(db["outbox"].find({"campaign": {"$regex": "^optin:code:"}}))
    assert doc["priority"] == optin.PRIORITY
    assert signing.check(keys.daemon_key(), doc, "the daemon") is None
    assert not messages.queue(signup.outbox, {**doc})  # the same request cannot text twice
    assert doc["_id"] == optin.message_id(Kind.CODE, answer.request_id, UNKNOWN)


def test_the_reply_lane_is_the_replies_own_priority() -> None:
    from jobs.dispatch.inbound import REPLY_PRIORITY

    assert optin.PRIORITY == REPLY_PRIORITY


def test_wrong_expired_and_sixth_tries_are_refused(
    signup: SignUp, cycle: Dispatcher, provider: FakeProvider, clock: ManualClock,
    db: Database[Doc],
) -> None:  # fmt: skip
    answer = ask(signup)
    cycle.run_once()
    code = code_in(texts_to(provider, UNKNOWN)[0])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        refused = signup.confirm(answer.request_id, UNKNOWN, wrong, CLIENT, AGENT)
        assert refused.refusal is Refusal.WRONG_CODE
    sixth = signup.confirm(answer.request_id, UNKNOWN, code, CLIENT, AGENT)
    assert sixth.refusal is Refusal.TOO_MANY_TRIES

    clock.advance(3600)
    again = ask(signup)
    cycle.run_once()
    fresh = code_in(texts_to(provider, UNKNOWN)[-1])
    clock.advance(optin.CODE_TTL.total_seconds())
    late = signup.confirm(again.request_id, UNKNOWN, fresh, CLIENT, AGENT)
    assert late.refusal is Refusal.EXPIRED
    other = signup.confirm(again.request_id, RECIPIENT, fresh, CLIENT, AGENT)
    assert other.refusal is Refusal.WRONG_CODE  # bound to its number
    assert (db["users"].find_one({"phone": UNKNOWN}) or {}).get("verified") is not True


def test_a_code_confirms_once(
    signup: SignUp, cycle: Dispatcher, provider: FakeProvider, db: Database[Doc]
) -> None:
    answer = ask(signup)
    cycle.run_once()
    code = code_in(texts_to(provider, UNKNOWN)[0])
    assert signup.confirm(answer.request_id, UNKNOWN, code, CLIENT, AGENT).refusal is None
    again = signup.confirm(answer.request_id, UNKNOWN, code, CLIENT, AGENT)
    assert again.refusal is Refusal.WRONG_CODE
    assert len((db["users"].find_one({"phone": UNKNOWN}) or {})["consents"]) == 1


def test_a_verified_or_opted_out_number_gets_the_same_answer_and_no_code(
    signup: SignUp, directory: Directory, clock: ManualClock, db: Database[Doc]
) -> None:
    directory.opt_out(UNVERIFIED, now=clock.now(), reason="texted STOP")
    for number in (RECIPIENT, UNVERIFIED):
        answer = ask(signup, number)
        assert answer.refusal is None and answer.request_id
    assert db["outbox"].count_documents({}) == 0
    assert db["optin_codes"].count_documents({}) == 0


def test_refusals_send_nothing(signup: SignUp, db: Database[Doc]) -> None:
    assert ask(signup, "not a number").refusal is Refusal.INVALID_NUMBER
    assert ask(signup, "+1 876 555 0100").refusal is Refusal.REGION  # Jamaica shares +1
    assert signup.request(UNKNOWN, False, CLIENT, AGENT).refusal is Refusal.NO_CONSENT
    assert db["outbox"].count_documents({}) == 0


def test_a_number_gets_three_codes_an_hour_and_five_a_day(
    signup: SignUp, clock: ManualClock, db: Database[Doc]
) -> None:
    outcomes = [ask(signup, client=f"10.0.0.{i}").refusal for i in range(4)]
    assert outcomes == [None, None, None, Refusal.NUMBER_HOURLY]
    clock.advance(3601)
    outcomes = [ask(signup, client=f"10.0.1.{i}").refusal for i in range(3)]
    assert outcomes == [None, None, Refusal.NUMBER_DAILY]
    assert db["outbox"].count_documents({}) == 5
    clock.advance(86400)
    assert ask(signup, client="10.0.2.1").refusal is None


def test_a_client_address_gets_ten_requests_an_hour(
    signup: SignUp, clock: ManualClock, db: Database[Doc]
) -> None:
    numbers = [f"1312555{n:04d}" for n in range(300, 311)]
    outcomes = [ask(signup, number).refusal for number in numbers]
    assert outcomes == [None] * 10 + [Refusal.CLIENT_HOURLY]
    assert db["outbox"].count_documents({}) == 10
    # The refused request did not use up the number's own allowance.
    assert ask(signup, numbers[-1], "10.9.9.9").refusal is None


def test_the_global_cap_pauses_codes_with_a_warning(
    signup: SignUp, clock: ManualClock, db: Database[Doc], capsys: pytest.CaptureFixture[str]
) -> None:
    capped = replace(signup.config, limits=Limits(codes_per_hour=2))
    signup.config = capped
    numbers = [f"1312555{n:04d}" for n in range(400, 404)]
    outcomes = [ask(signup, number, f"10.1.0.{i}").refusal for i, number in enumerate(numbers)]
    assert outcomes == [None, None, Refusal.PAUSED, Refusal.PAUSED]
    assert db["outbox"].count_documents({}) == 2
    assert "optin.paused" in capsys.readouterr().out
    clock.advance(3600)
    assert ask(signup, numbers[3], "10.1.1.1").refusal is None


def test_vetting_lets_only_daemon_signed_codes_reach_numbers_without_consent(
    signup: SignUp, store: OutboxStore, cycle: Dispatcher, provider: FakeProvider,
    keys: KeyRing, clock: ManualClock, directory: Directory, db: Database[Doc],
) -> None:  # fmt: skip
    now = clock.now()
    body = "your sign-up code is 111111"
    forged = messages.message(Kind.CODE, "forged", UNKNOWN, SENDER, body, now, None)
    forged["signature"] = signing.sign(keys.user_key("alice") or "", forged)
    welcome = messages.message(Kind.WELCOME, "w", UNKNOWN, SENDER, "hi", now, Signatures(keys))
    directory.opt_out(UNVERIFIED, now=now, reason="texted STOP")
    to_opted_out = messages.message(Kind.CODE, "o", UNVERIFIED, SENDER, body, now, Signatures(keys))
    for doc in (forged, welcome, to_opted_out):
        messages.queue(store, doc)
    cycle.run_once()
    assert provider.calls == []
    errors = {d["_id"]: d["error"]["code"] for d in db["outbox"].find()}
    assert errors == {forged["_id"]: "signature", welcome["_id"]: "not_verified",
                      to_opted_out["_id"]: "opted_out"}  # fmt: skip


def test_terms_carry_a_version_and_the_hash_of_the_text_shown() -> None:
    program = optin.Program(name="Pool", terms_url="https://example.org/t", terms_version="3")
    record = program.terms_record()
    assert record["version"] == "3" and "https://example.org/t" in record["text"]
    changed = replace(program, frequency="Up to 8 msgs/month").terms_record()
    assert changed["sha256"] != record["sha256"]
    assert all(len(optin.new_code()) == 6 for _ in range(50))


def test_the_cap_shows_in_the_daemons_metrics_whichever_process_served_the_page(
    signup: SignUp, db: Database[Doc], clock: ManualClock
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from jobs import health
    from scheduler.surfaces.exporter import OutboxCollector

    signup.config = replace(signup.config, limits=Limits(codes_per_hour=1))
    ask(signup, "13125550900", "10.2.0.1")
    ask(signup, "13125550901", "10.2.0.2")
    registry = CollectorRegistry()
    registry.register(OutboxCollector(db, clock, health.AlwaysActive(), cache_seconds=5))
    scraped = generate_latest(registry).decode()
    assert "sms_outbox_optin_codes_this_hour 1.0" in scraped
    assert "sms_outbox_optin_capped_this_hour 1.0" in scraped


def text(body: str) -> dict[str, Any]:
    """An inbound text from UNKNOWN, as the inbound step hands over a confirmed one."""
    return {"inbound_id": f"mdr2-{abs(hash(body)):032x}", "from": UNKNOWN, "to": SENDER,
            "body": body}  # fmt: skip


def test_a_yes_after_24_hours_verifies_nothing(
    signup: SignUp, clock: ManualClock, db: Database[Doc]
) -> None:
    joins = KeywordOptIn(signup)
    handled = joins(text("join"))
    assert handled is not None and handled.outcome == "join_prompted"
    clock.advance(optin.KEYWORD_WINDOW.total_seconds() + 1)
    # Not an answer to a JOIN any more: a START, which the inbound step handles.
    assert joins(text("Yes")) is None
    assert db["users"].find_one({"phone": UNKNOWN}) is None


def test_a_yes_within_the_day_verifies_with_both_ids(
    signup: SignUp, clock: ManualClock, db: Database[Doc]
) -> None:
    joins = KeywordOptIn(signup)
    join, yes = text("JOIN"), text("yes")
    joins(join)
    clock.advance(3600)
    handled = joins(yes)
    assert handled is not None and handled.outcome == "opted_in"
    consent = (db["users"].find_one({"phone": UNKNOWN}) or {})["consent"]
    assert (consent["join_inbound_id"], consent["yes_inbound_id"]) == (
        join["inbound_id"], yes["inbound_id"],
    )  # fmt: skip
    again = joins(text("YES"))
    assert again is None or again.outcome == "already_opted_in"


def test_optin_settings_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.errors import ConfigError
    from scheduler.optin import optin_config
    from scheduler.settings import load_settings

    for name, value, setting in (
        ("NUMBER", "not a number", r"optin\.number"),
        ("TERMS_URL", "javascript:alert(1)", r"optin\.terms_url"),
    ):
        with monkeypatch.context() as env:
            env.setenv(f"SMS_OUTBOX_OPTIN__{name}", value)
            with pytest.raises(ConfigError, match=setting):
                load_settings(None, {})
    monkeypatch.setenv("SMS_OUTBOX_OPTIN__NUMBER", "(206) 555-0100")
    monkeypatch.setenv("SMS_OUTBOX_OPTIN__KEYWORDS", '["JOIN", "Sign Up!"]')
    config = optin_config(load_settings(None, {}))
    assert config.number == "12065550100" and config.keywords == ("join", "sign up")
    assert config.program.name == "sms-outbox"


def test_codes_wait_for_a_granted_program_number(signup: SignUp, db: Database[Doc]) -> None:
    signup.config = replace(signup.config, number="12065550188")  # granted to nobody
    assert ask(signup).refusal is Refusal.PAUSED
    assert db["outbox"].count_documents({}) == 0
    signup.config = replace(signup.config, number=None)  # the first granted number
    assert ask(signup, client="10.3.0.1").refusal is None
    assert (db["outbox"].find_one() or {})["from"] == SENDER


def test_the_daemon_and_the_page_racing_for_the_daemon_key_get_the_same_one(
    tmp_path: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    folder = tmp_path / "shared-keys"
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = set(pool.map(lambda _: KeyRing(folder).daemon_key(), range(16)))
    assert len(found) == 1 and len(next(iter(found))) == 64
    assert [p.name for p in folder.iterdir()] == ["daemon.key"]
