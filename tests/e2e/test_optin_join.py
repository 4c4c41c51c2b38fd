"""/join as a person uses it: `sms-outbox join` and the daemon against the simulator, the page
filled in headless Chromium (Selenium with Debian's chromium-driver), the code read from the
texts the simulator accepted, as the phone would show it."""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.e2e.observe import free_port, get, wait_for
from tests.integration.stack import Db
from tests.processes import stop

SOURCE, PERSON = "12065550100", "12065550142"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@contextmanager
def chromium(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium driven by chromedriver; quit on every path."""
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)  # fmt: skip
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def _shown(driver: WebDriver, element_id: str) -> str:
    found = WebDriverWait(driver, 30).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )
    return str(found.text)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs chromium-driver")
def test_a_person_signs_up_on_join_with_the_code_texted_to_their_phone(
    cli: Cli, simulator: FlowrouteSimulator, db: Db, tmp_path: Path
) -> None:
    _ok(cli("senders", "grant", "ops", SOURCE))
    base = f"http://127.0.0.1:{free_port()}"
    cli.env["SMS_OUTBOX_OPTIN__PROGRAM"] = "Pool News"
    cli.env["SMS_OUTBOX_OPTIN__TERMS_URL"] = "https://example.org/terms"
    web = cli.popen("join", "--listen", base.removeprefix("http://"))
    daemon = None
    try:
        wait_for(lambda: get(base + "/join")[0] == 200, "the sign-up page")
        daemon = cli.popen("run")  # after the page made the daemon key, so neither races for it
        with chromium(tmp_path) as driver:
            driver.get(base + "/join")
            assert "Pool News" in driver.find_element(By.ID, "terms").text
            consent = driver.find_element(By.ID, "consent")
            assert not consent.is_selected()
            driver.find_element(By.ID, "phone").send_keys("(206) 555-0142")
            consent.click()
            driver.set_window_size(900, 900)
            driver.save_screenshot(str(tmp_path / "join.png"))
            driver.find_element(By.ID, "send-code").click()
            assert "Check your phone" in _shown(driver, "check-phone")

            text = wait_for(
                lambda: next((m for m in simulator.messages() if m.to == PERSON), None),
                "the code to reach the phone",
            )
            code = re.search(r"\b(\d{6})\b", text.body)
            assert text.from_ == SOURCE and code, text.body
            wait_for(lambda: (db["outbox"].find_one({"provider_id": text.id}) or None),
                     "the daemon to record the code's send")  # fmt: skip
            driver.find_element(By.ID, "code").send_keys(code.group(1))
            driver.find_element(By.ID, "confirm").click()
            assert "You are subscribed" in _shown(driver, "subscribed")

        user = db["users"].find_one({"phone": PERSON}) or {}
        consent_record = user["consent"]
        assert user["verified"] is True
        assert consent_record["client"] == "127.0.0.1"
        assert "Chrome" in consent_record["user_agent"]
        assert consent_record["terms"]["version"] == "1"
        assert "https://example.org/terms" in consent_record["terms"]["text"]
        assert consent_record["code_provider_id"] == text.id
        welcome = wait_for(
            lambda: [m for m in simulator.messages() if m.to == PERSON][1:] or None,
            "the welcome text",
        )
        assert "Pool News" in welcome[0].body and "STOP" in welcome[0].body
        # Once the daemon has nothing left, the person got the code and one welcome.
        assert _ok(cli("run", "--until-idle", timeout=60)) is not None
        assert len([m for m in simulator.messages() if m.to == PERSON]) == 2

        # Operators see the whole history, and can export it for an audit.
        _ok(cli("recipients", "opt-out", PERSON, "--reason", "asked by phone"))
        shown = _ok(cli("recipients", "show", "(206) 555-0142"))
        lines = shown.splitlines()
        assert lines[0].startswith(f"{PERSON}\topted out (asked by phone")
        history = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("messages"))]
        events = [line.split()[1] for line in history]
        assert events == ["code_sent", "consent", "verified", "opt_out"], shown
        assert text.id in shown and consent_record["terms"]["sha256"] in shown
        exported = tmp_path / "evidence.csv"
        _ok(cli("recipients", "export", "--evidence", "--output", str(exported)))
        rows = list(csv.DictReader(exported.open(encoding="utf-8")))
        (row,) = [r for r in rows if r["event"] == "consent"]
        assert (row["phone"], row["client"], row["code_provider_id"]) == (
            PERSON, "127.0.0.1", text.id,
        )  # fmt: skip
        assert row["terms_sha256"] == consent_record["terms"]["sha256"]
    finally:
        _, err = stop(web)
        if daemon is not None:
            stop(daemon)
    assert web.returncode == 0, err


def _form(session: requests.Session, base: str) -> str:
    page = session.get(base + "/join", timeout=10).text
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_hammering_the_form_sends_no_more_codes_than_the_limits_allow(
    cli: Cli, simulator: FlowrouteSimulator, db: Db
) -> None:
    _ok(cli("senders", "grant", "ops", SOURCE))
    base = f"http://127.0.0.1:{free_port()}"
    web = cli.popen("join", "--listen", base.removeprefix("http://"))
    try:
        wait_for(lambda: get(base + "/join")[0] == 200, "the sign-up page")
        session = requests.Session()
        token = _form(session, base)

        def post(number: str) -> int:
            form = {"csrf_token": token, "phone": number, "consent": "y"}
            return session.post(base + "/join", data=form, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            same = list(pool.map(post, [PERSON] * 12))
        assert sorted(same) == [200] * 3 + [429] * 9
        others = [f"1312555{n:04d}" for n in range(100, 120)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            spread = list(pool.map(post, others))
        assert spread.count(200) == 7 and spread.count(429) == 13  # 10 per address in all
        without_token = requests.post(base + "/join", data={"phone": others[0], "consent": "y"},
                                      timeout=10)  # fmt: skip
        assert without_token.status_code == 400
        assert db["outbox"].count_documents({}) == 10
        assert db["outbox"].count_documents({"to": PERSON}) == 3
    finally:
        _, err = stop(web)
    assert web.returncode == 0, err


def test_behind_a_trusted_proxy_each_visitor_has_its_own_limit(
    cli: Cli, simulator: FlowrouteSimulator, db: Db
) -> None:
    _ok(cli("senders", "grant", "ops", SOURCE))
    base = f"http://127.0.0.1:{free_port()}"
    cli.env["SMS_OUTBOX_OPTIN__TRUSTED_PROXY"] = "127.0.0.1"
    web = cli.popen("join", "--listen", base.removeprefix("http://"))
    try:
        wait_for(lambda: get(base + "/join")[0] == 200, "the sign-up page")
        session = requests.Session()
        token = _form(session, base)

        def post(number: str, visitor: str) -> int:
            form = {"csrf_token": token, "phone": number, "consent": "y"}
            headers = {"X-Forwarded-For": visitor}
            return session.post(base + "/join", data=form, headers=headers, timeout=30).status_code

        first = [post(f"1312555{n:04d}", "198.51.100.1") for n in range(200, 211)]
        assert first == [200] * 10 + [429]
        assert post("13125550300", "198.51.100.2") == 200
        codes = db["optin_codes"].distinct("client")
        assert sorted(codes) == ["198.51.100.1", "198.51.100.2"]
    finally:
        _, err = stop(web)
    assert web.returncode == 0, err
