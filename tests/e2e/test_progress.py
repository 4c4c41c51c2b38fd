"""Following a campaign from a terminal: --watch in a pseudo-terminal, --json, --csv, campaigns."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import datetime
from typing import Any

import pytest

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.e2e.terminal import run_in_terminal
from tests.processes import stop

SOURCE = "12065550100"
NUMBERS = [f"1206555{n:04d}" for n in range(130, 138)]


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def _campaign(cli: Cli, *extra: str) -> str:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", *NUMBERS, "--verified"))
    _ok(cli("recipients", "add", "12065550199", *extra))
    return _ok(cli("broadcast", "--user", "alice", "--body", "Pool opens at 9")).strip()


def _is_iso(text: str) -> bool:
    return "T" in text and datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None


@pytest.mark.slow
def test_watch_shows_live_progress_in_a_terminal_and_ends_with_the_campaign(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    campaign = _campaign(cli)
    simulator.fail_next(400, detail="bad request")
    cli.env["SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND"] = "2"
    daemons: list[subprocess.Popen[str]] = []
    try:
        # The daemon starts once the watch shows its first view, not before: it could be done.
        screen = run_in_terminal(
            [*cli.argv0, "status", "--campaign", campaign, "--watch", "--interval", "0.3"],
            cli.env, cli.cwd, timeout=120,
            on_first_output=lambda: daemons.append(cli.popen("run")),
        )  # fmt: skip
    finally:
        for daemon in daemons:
            stop(daemon)
    assert daemons, "the watch never drew anything"
    assert screen.returncode == 0, screen.text
    text = screen.text
    assert "━" in screen.raw  # rich drew its bar
    assert "\x1b[" in screen.raw  # in colour, redrawn in place
    assert "ETA" in text and "rate" in text
    assert "sent 7" in text and "failed 1" in text and "waiting 0" in text
    assert "100.0%  8 / 8" in text
    assert f"campaign {campaign} is done" in text


@pytest.mark.slow
def test_watch_with_json_prints_one_line_per_refresh_until_done(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    campaign = _campaign(cli)
    cli.env["SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND"] = "4"
    # The watch starts first: a daemon that started first could finish before the first view.
    watch = cli.popen("status", "--campaign", campaign, "--watch", "--json", "--interval", "0.3")
    assert watch.stdout is not None
    first = watch.stdout.readline()
    daemon = cli.popen("run")
    try:
        rest, err = watch.communicate(timeout=120)
    finally:
        stop(daemon)
    assert watch.returncode == 0, err
    views = [json.loads(line) for line in (first + rest).splitlines()]
    assert views[-1]["progress"]["done"] is True
    assert views[-1]["progress"]["sent"] == len(NUMBERS)
    assert not views[0]["progress"]["done"]
    assert any(v["eta"] for v in views[:-1])
    assert all(_is_iso(v["as_of"]) for v in views)


def test_json_dates_are_iso_8601_and_csv_has_one_row_per_recipient(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    campaign = _campaign(cli)
    _ok(cli("run", "--until-idle"))

    summary = json.loads(_ok(cli("status", "--campaign", campaign, "--json")))
    assert summary["states"] == {"sent": len(NUMBERS)}
    assert summary["progress"]["done"] is True and summary["eta"] is None
    assert _is_iso(summary["request"]["created_at"])
    message = json.loads(_ok(cli("status", f"{campaign}:{NUMBERS[0]}", "--json")))
    assert _is_iso(message["sent_at"]) and _is_iso(message["created_at"])

    rows = list(csv.DictReader(io.StringIO(_ok(cli("status", "--campaign", campaign, "--csv")))))
    assert [r["number"] for r in rows] == NUMBERS
    assert {r["state"] for r in rows} == {"sent"}
    assert all(_is_iso(r["sent_at"]) for r in rows)
    assert list(rows[0]) == ["number", "state", "reason", "created_at", "sent_at", "updated_at"]


def test_campaigns_lists_recent_campaigns_with_progress(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    first = _campaign(cli)
    _ok(cli("run", "--until-idle"))
    second = _ok(cli("broadcast", "--user", "alice", "--body", "Pool closes at 5")).strip()

    rows = json.loads(_ok(cli("campaigns", "--json")))
    assert [r["campaign"] for r in rows] == [second, first]
    assert rows[1]["sent"] == len(NUMBERS) and rows[1]["done"] is True
    assert rows[0]["done"] is False and rows[0]["request"] == "new"
    text = _ok(cli("campaigns"))
    assert first in text and second in text and "100%" in text


def test_watch_and_csv_need_a_campaign(cli: Cli) -> None:
    result = cli("status", "0123456789abcdef01234567", "--csv")
    assert result.returncode == 2 and "--campaign" in result.stderr
    assert cli("status", "--campaign", "nope", "--watch").returncode == 1
