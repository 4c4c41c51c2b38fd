"""The dashboard as an operator sees it: served by `sms-outbox dashboard`, loaded in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.e2e.observe import free_port, get, token_proxy, wait_for
from tests.processes import stop

SOURCE = "12065550100"
NUMBERS = [f"1206555{n:04d}" for n in range(150, 166)]
TOKEN = "dash-token-5b1e"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium once; its standard output."""
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _campaign_in_progress(cli: Cli, simulator: FlowrouteSimulator) -> str:
    """A broadcast stopped part-way: some messages sent, one refused, the rest still queued."""
    _ok(cli("senders", "grant", "<b>alice</b>", SOURCE))
    _ok(cli("recipients", "add", *NUMBERS, "--verified"))
    campaign = _ok(cli("broadcast", "--user", "<b>alice</b>", "--body", "Pool opens")).strip()
    simulator.fail_next(400, code=1110, detail="opted out")
    cli.env["SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND"] = "3"
    daemon = cli.popen("run")
    try:
        wait_for(lambda: len(simulator.messages()) >= 4, "a few messages to go out")
    finally:
        stop(daemon)
    return campaign


def _cells(dom: str, campaign: str) -> dict[str, str]:
    row = re.search(rf'<tr data-campaign="{campaign}">(.*?)</tr>', dom, re.S)
    assert row, dom[:3000]
    return dict(re.findall(r'data-field="(\w+)">([^<]*)<', row.group(1)))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_the_dashboard_shows_in_chromium_what_status_reports(
    cli: Cli, simulator: FlowrouteSimulator, tmp_path: Path
) -> None:
    campaign = _campaign_in_progress(cli, simulator)
    summary = json.loads(_ok(cli("status", "--campaign", campaign, "--json")))
    assert 0 < summary["progress"]["waiting"] < len(NUMBERS)  # still in progress

    base = f"http://127.0.0.1:{free_port()}"
    cli.env["SMS_OUTBOX_DASHBOARD__TOKEN"] = TOKEN
    dashboard = cli.popen("dashboard", "--listen", base.removeprefix("http://"))
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        wait_for(lambda: get(base + "/", auth)[0] == 200, "the dashboard to answer")
        assert get(base + "/")[0] == 401
        assert get(base + "/?token=wrong")[0] == 401
        assert get(base + f"/?token={TOKEN}")[0] == 401  # never in a URL
        assert get(base + "/", auth, method="POST")[0] == 405

        with token_proxy(TOKEN) as through_proxy:
            dom = chromium(tmp_path, *through_proxy, "--dump-dom", f"{base}/")
        cells = _cells(dom, campaign)
        for field in ("sent", "delivered", "failed", "rejected", "waiting"):
            assert int(cells[field]) == summary["progress"][field], field
        assert int(cells["total"]) == summary["total"]
        assert cells["progress"] == f"{100 * summary['progress']['fraction']:.1f}%"
        assert "&lt;b&gt;alice&lt;/b&gt;" in dom and "<b>alice</b>" not in dom
        assert not any(number in dom for number in NUMBERS)  # recipients stay private
        assert f'<tr data-sender="{SOURCE}">' in dom  # the organisation's own number
        # The opt-out table counts what `status` and the daemon's warning count: today's STOPs.
        (rate,) = json.loads(_ok(cli("status", "--json")))["opt_outs"]
        row = re.search(rf'<tr data-sender="{SOURCE}">(.*?)</tr>', dom, re.S)
        assert row, dom[-3000:]
        sender = dict(re.findall(r'data-field="(\w+)">([^<]*)<', row.group(1)))
        assert (int(sender["sent"]), int(sender["opt_outs"])) == (rate["sent"], rate["opt_outs"])
        assert rate["opt_outs"] == 0 and rate["sent"] > 0  # a refused 1110 is not a STOP
        assert 'id="account">active<' in dom

        screenshot = tmp_path / "dashboard.png"
        with token_proxy(TOKEN) as through_proxy:
            chromium(tmp_path, *through_proxy, f"--screenshot={screenshot}",
                     "--window-size=1280,800", "--hide-scrollbars", f"{base}/")  # fmt: skip
        assert screenshot.stat().st_size > 10_000
        print(f"dashboard screenshot: {screenshot}")
    finally:
        started = time.monotonic()
        out, err = stop(dashboard)
    assert dashboard.returncode == 0, err
    assert time.monotonic() - started < 15
    assert TOKEN not in out + err


def test_the_dashboard_will_not_start_without_a_token(cli: Cli) -> None:
    result = cli("dashboard", "--listen", f"127.0.0.1:{free_port()}")
    assert result.returncode == 78
    assert result.stderr.strip().splitlines() == [
        "sms-outbox: configuration error: setting dashboard.token is missing"
        " (or dashboard.token_file)"
    ]
