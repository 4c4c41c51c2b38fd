"""The /join page over HTTP (Flask's test client, CSRF on): what each refusal shows, that a
post without its CSRF token is refused, and that a refused step sends nothing."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from pymongo.database import Database

from jobs.doubles.clock import ManualClock
from jobs.keys import KeyRing
from jobs.mongo.directory import Directory
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import Doc, OutboxStore
from jobs.optin.pages import blueprint
from jobs.optin.service import OptInConfig, SignUp
from jobs.rules.optin import Limits, Program
from jobs.webapp import WebConfig
from jobs.webapp import create_app as create_web_app
from scheduler.surfaces.optin_web import create_app, session_key
from tests.unit.fakes import SENDER, UNKNOWN

PROGRAM = Program(name="Pool News", terms_url="https://example.org/terms",
                  privacy_url="https://example.org/privacy")  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def signup(
    db: Database[Doc], store: OutboxStore, directory: Directory, clock: ManualClock,
    tmp_path: Path,
) -> SignUp:  # fmt: skip
    optins = OptInStore(db)
    optins.ensure_indexes()
    config = OptInConfig(program=PROGRAM, number=SENDER)
    return SignUp(optins, store, directory, KeyRing(tmp_path / "keys"), clock, config)


@pytest.fixture
def browser(signup: SignUp) -> FlaskClient:
    app = create_app(signup, PROGRAM, session_key(signup.keys.daemon_key()))
    return app.test_client()


def token(page: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def ask(browser: FlaskClient, number: str, consent: bool = True) -> tuple[int, str]:
    page = browser.get("/join").get_data(as_text=True)
    form = {"csrf_token": token(page), "phone": number}
    if consent:
        form["consent"] = "y"
    response = browser.post("/join", data=form)
    return response.status_code, response.get_data(as_text=True)


def refusal(page: str) -> str | None:
    found = re.search(r'data-refusal="(\w+)"', page)
    return found.group(1) if found else None


def test_the_page_shows_the_terms_and_an_unticked_consent_box(browser: FlaskClient) -> None:
    response = browser.get("/join")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    for text in (
        "Pool News",
        "Up to 4 msgs/month",
        "Msg&amp;data rates may apply.",
        "Reply HELP for help, STOP to cancel.",
        'href="https://example.org/privacy"',
    ):
        assert text in page  # fmt: skip
    box = re.search(r'<input type="checkbox"[^>]*>', page)
    assert box and "checked" not in box.group(0)
    assert "<script" not in page
    assert "script-src" not in response.headers["Content-Security-Policy"]


def test_a_post_without_its_csrf_token_is_refused_and_sends_nothing(
    browser: FlaskClient, db: Database[Doc]
) -> None:
    browser.get("/join")
    response = browser.post("/join", data={"phone": UNKNOWN, "consent": "y"})
    assert response.status_code == 400
    forged = browser.post("/join", data={"phone": UNKNOWN, "consent": "y", "csrf_token": "x"})
    assert forged.status_code == 400
    confirm = browser.post("/join/confirm", data={"request_id": "a", "phone": UNKNOWN,
                                                  "code": "123456"})  # fmt: skip
    assert confirm.status_code == 400
    assert db["outbox"].count_documents({}) == 0


def test_each_refusal_is_a_clear_message_and_nothing_is_sent(
    browser: FlaskClient, db: Database[Doc]
) -> None:
    status, page = ask(browser, UNKNOWN, consent=False)
    assert (status, refusal(page)) == (400, "no_consent")
    assert "Tick the box" in page
    status, page = ask(browser, "+1 876 555 0100")
    assert (status, refusal(page)) == (400, "region")
    status, page = ask(browser, "555")
    assert (status, refusal(page)) == (400, "invalid_number")
    assert db["outbox"].count_documents({}) == 0


def test_the_number_limit_is_reported_on_the_page(browser: FlaskClient, db: Database[Doc]) -> None:
    statuses = [ask(browser, UNKNOWN)[0] for _ in range(3)]
    status, page = ask(browser, UNKNOWN)
    assert statuses == [200, 200, 200]
    assert (status, refusal(page)) == (429, "number_hourly")
    assert "Too many codes were requested for this number" in page
    assert db["outbox"].count_documents({}) == 3


def test_the_client_limit_is_reported_on_the_page(browser: FlaskClient) -> None:
    for n in range(10):
        assert ask(browser, f"1312555{n + 600:04d}")[0] == 200
    status, page = ask(browser, "13125550700")
    assert (status, refusal(page)) == (429, "client_hourly")


def test_the_global_cap_is_reported_on_the_page(signup: SignUp, browser: FlaskClient) -> None:
    signup.config = replace(signup.config, limits=Limits(codes_per_hour=1))
    assert ask(browser, "13125550800")[0] == 200
    status, page = ask(browser, "13125550801")
    assert (status, refusal(page)) == (503, "paused")


def test_the_code_step_answers_wrong_codes_on_the_page(
    browser: FlaskClient, db: Database[Doc]
) -> None:
    status, page = ask(browser, UNKNOWN)
    assert status == 200 and "Check your phone" in page
    request_id = re.search(r'name="request_id" type="hidden" value="(\w+)"', page)
    assert request_id
    form = {"csrf_token": token(page), "request_id": request_id.group(1), "phone": UNKNOWN,
            "code": "000000"}  # fmt: skip
    response = browser.post("/join/confirm", data=form)
    assert response.status_code == 400
    assert refusal(response.get_data(as_text=True)) == "wrong_code"


def test_the_staff_web_app_serves_join_to_anyone_beside_its_own_pages(
    signup: SignUp, db: Database[Doc]
) -> None:
    config = WebConfig(
        public_url="http://127.0.0.1:8000", issuer="http://127.0.0.1:9/", client_id="staff",
        client_secret="s" * 32, session_secret="k" * 32, keyring=signup.keys,
    )  # fmt: skip
    app = create_web_app(config, db, public=[blueprint(lambda: signup, PROGRAM)])
    browser = app.test_client()

    assert browser.get("/campaigns").status_code in (302, 401), "staff pages need a sign-in"
    status, page = ask(browser, "(206) 555-0142")
    assert status == 200, page
    assert db["optin_codes"].count_documents({}) == 1
    assert db["outbox"].count_documents({"to": "12065550142"}) == 1, "the code text is queued"
