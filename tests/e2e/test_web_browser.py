"""A sender in Chromium: signs in at the real provider, composes, previews and sends a broadcast;
the daemon texts each recipient once and the campaign page follows it without reloading."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from jobs.simulator.server import FlowrouteSimulator
from tests.e2e.observe import wait_for
from tests.processes import stop
from tests.web.browser import chromium, needs_browser, until
from tests.web.stack import SOURCE, WebStack, needs_provider, web_stack

__all__ = ["web_stack"]
pytestmark = [needs_provider, needs_browser, pytest.mark.slow]
NUMBERS = [f"1206555{n:04d}" for n in range(400, 408)]
BODY = "Pool opens at 9 \u2013 don\u2019t forget towels"
# `SMS_OUTBOX_WEB_SCREENSHOTS=docs pytest ...` refreshes the pictures docs/web.md shows.
PICTURES = os.environ.get("SMS_OUTBOX_WEB_SCREENSHOTS")


def _snap(driver: WebDriver, tmp_path: Path, name: str) -> None:
    path = Path(PICTURES or tmp_path) / f"web-{name}.png"
    driver.set_window_size(1280, max(700, min(driver.execute_script(
        "return document.body.scrollHeight"), 1400)))  # fmt: skip
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 5_000


def _text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _sign_in(driver: WebDriver, login: str) -> None:
    until(driver, lambda d: d.find_elements(By.NAME, "login"))
    driver.find_element(By.NAME, "login").send_keys(login)
    driver.find_element(By.NAME, "password").send_keys("any password")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(driver, lambda d: "/interaction/" not in d.current_url or d.find_elements(
        By.CSS_SELECTOR, "input[value=consent]"))  # fmt: skip
    if "/interaction/" in driver.current_url:
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_a_sender_composes_previews_and_sends_and_the_campaign_page_follows_it(
    web_stack: WebStack, simulator: FlowrouteSimulator, tmp_path: Path
) -> None:
    url = web_stack.url
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    daemon = None
    with chromium(tmp_path) as driver:
        try:
            driver.get(f"{url}/compose")
            _sign_in(driver, "alice")
            until(driver, lambda d: d.current_url == f"{url}/compose")
            assert _text(driver, "#who") == "Alice Sender"
            driver.find_element(By.ID, "body").send_keys(BODY)
            until(driver, lambda d: d.find_element(By.ID, "counter").get_attribute(
                "data-measured") == BODY)  # fmt: skip
            assert _text(driver, "#encoding") == "GSM-7"  # the smart quote and dash are fixed
            assert _text(driver, "#segments") == "1"
            assert driver.find_element(By.ID, "fixed").is_displayed()
            driver.find_element(By.ID, "body").send_keys(" \U0001f3ca")
            until(driver, lambda d: _text(d, "#encoding") == "UCS-2")
            driver.find_element(By.ID, "body").send_keys("\b\b")
            until(driver, lambda d: _text(d, "#encoding") == "GSM-7")
            _snap(driver, tmp_path, "compose")

            driver.find_element(By.ID, "preview").click()
            until(driver, lambda d: d.find_elements(By.ID, "people-count"))
            assert _text(driver, "#people-count") == str(len(NUMBERS))
            assert _text(driver, "#segment-count") == "1 (GSM-7)"
            assert _text(driver, "#cost") == f"{len(NUMBERS) * 0.0079:.2f} USD"
            assert _text(driver, "#text") == "Pool opens at 9 - don't forget towels"
            _snap(driver, tmp_path, "preview")

            driver.find_element(By.ID, "confirm").click()
            until(driver, lambda d: d.find_elements(By.ID, "campaign-id"))
            campaign = _text(driver, "#campaign-id")
            assert driver.current_url == f"{url}/campaigns/{campaign}"
            assert _text(driver, "#sender") == "alice"
            polled = driver.find_element(By.TAG_NAME, "body").get_attribute("data-polled")

            daemon = web_stack.cli.popen("run")
            wait_for(lambda: len(simulator.messages()) >= len(NUMBERS), "every text to go out")
            until(driver, lambda d: _text(d, '[data-field="progress"]') == "100.0%", 60)
            assert _text(driver, "#states tbody") == f"sent {len(NUMBERS)}"
            until(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recipients tbody tr"))
                  == len(NUMBERS))  # fmt: skip
            assert "•••••••0400 sent" in _text(driver, "#recipients tbody")
            assert _text(driver, '[data-field="eta"]') == "done"
            # Updated by polling: the page was never loaded again.
            assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-polled") != polled
            assert driver.current_url == f"{url}/campaigns/{campaign}"
            _snap(driver, tmp_path, "campaign")

            driver.get(f"{url}/campaigns")
            row = f'tr[data-campaign="{campaign}"] [data-field="total"]'
            until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, row))
            assert _text(driver, row) == str(len(NUMBERS))
            _snap(driver, tmp_path, "campaigns")

            driver.get(f"{url}/recipients?number=(206)%20555-0401")
            until(driver, lambda d: d.find_elements(By.ID, "person"))
            assert "sent" in _text(driver, "#messages") and campaign in _text(driver, "#messages")
            assert _text(driver, "#count-verified") == str(len(NUMBERS))
            _snap(driver, tmp_path, "recipients")
        finally:
            if daemon is not None:
                stop(daemon)
    sent = simulator.messages()
    assert Counter(m.to for m in sent) == Counter(NUMBERS)  # each person texted exactly once
    assert {m.from_ for m in sent} == {SOURCE}
    assert {m.body for m in sent} == {"Pool opens at 9 - don't forget towels"}
