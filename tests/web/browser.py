"""Headless Chromium driven by Selenium through Debian's chromedriver; it resolves no name but
the loopback address, so no page it loads reaches the network."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver packages",
)


@contextmanager
def chromium(tmp: Path) -> Iterator[WebDriver]:
    """A headless browser, quit on every path."""
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--window-size=1280,900", f"--user-data-dir={tmp / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):  # fmt: skip
        options.add_argument(arg)
    service = webdriver.ChromeService(
        executable_path=CHROMEDRIVER, log_output=str(tmp / "chromedriver.log")
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: WebDriver, check: Callable[[WebDriver], object], timeout: float = 30) -> object:
    """Poll `check` in the browser until it is truthy, with a deadline."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
