"""`sms-outbox simulator` as a user runs it: in the foreground, with the real daemon against it."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.e2e.observe import free_port, get
from tests.servers.mongo_server import MongoServer

SOURCE = "12065550100"
NUMBERS = ["12065550141", "12065550142", "12065550143"]


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def _banner(process: subprocess.Popen[str], timeout: float = 30) -> dict[str, str]:
    """Read the banner up to its last line; the SMS_OUTBOX_* lines it prints, as settings."""
    assert process.stdout is not None
    settings: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.strip().startswith("SMS_OUTBOX_"):
            key, _, value = line.strip().partition("=")
            settings[key] = value
        if line.startswith("Stop with"):
            return settings
    raise AssertionError(f"no banner from the simulator: {settings}")


@pytest.mark.slow
def test_the_daemon_sends_through_the_simulator_it_was_pointed_at(cli: Cli) -> None:
    port = free_port()
    simulator = subprocess.Popen(
        [*cli.argv0, "simulator", "--port", str(port), "--rate", "5", "--latency-ms", "20",
         "--opted-out", "(206) 555-0143"],
        env=cli.env, cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        printed = _banner(simulator)
        assert printed["SMS_OUTBOX_FLOWROUTE__BASE_URL"] == f"http://127.0.0.1:{port}"
        cli.env.update(printed)
        cli.env["SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND"] = "5"
        _ok(cli("senders", "grant", "alice", SOURCE))
        _ok(cli("recipients", "add", *NUMBERS, "--verified"))
        campaign = _ok(cli("broadcast", "--user", "alice", "--body", "Pool opens at 9")).strip()
        _ok(cli("run", "--until-idle"))

        summary = json.loads(_ok(cli("status", "--campaign", campaign, "--json")))
        assert summary["states"] == {"failed": 1, "sent": 2}
        [(reason, count)] = summary["reasons"].items()
        assert reason.startswith("opted_out") and count == 1  # with Flowroute's code beside it
        optout = [r for r in json.loads(_ok(cli("recipients", "list", "--json")))
                  if r["phone"] == NUMBERS[2]]  # fmt: skip
        assert optout[0]["opted_out"]["reason"] == "flowroute 1110"

        credentials = printed["SMS_OUTBOX_FLOWROUTE__ACCESS_KEY"] + ":"
        credentials += printed["SMS_OUTBOX_FLOWROUTE__SECRET_KEY"]
        auth = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        base = printed["SMS_OUTBOX_FLOWROUTE__BASE_URL"]
        status, body = get(f"{base}/v2.1/messages?start_date={today}", auth)
        records = json.loads(body)["data"]
        assert status == 200 and sorted(r["attributes"]["to"] for r in records) == NUMBERS[:2]
        status, body = get(f"{base}/v2.1/messages/{records[0]['id']}", auth)
        assert status == 200 and json.loads(body)["data"]["id"] == records[0]["id"]
        assert get(f"{base}/v2.1/messages?start_date={today}")[0] == 401
    finally:
        simulator.send_signal(signal.SIGINT)
        out, err = simulator.communicate(timeout=30)
    assert simulator.returncode == 0, err
    assert "simulator stopped: 3 requests, 2 messages accepted" in out
    assert out.count("POST /v2.1/messages to 1206555014") == 3


def test_the_simulator_refuses_impossible_fault_rates(cli: Cli) -> None:
    result = cli("simulator", "--fail-rate", "0.7", "--drop-rate", "0.5")
    assert result.returncode == 2
    assert "more than 1" in result.stderr


@pytest.mark.slow
def test_the_readme_try_it_section_runs_as_written(cli: Cli, mongo_server: MongoServer) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = next(
        b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "simulator --port 8080" in b
    )
    port = str(free_port())
    script = block.replace("mongodb://localhost:27017", mongo_server.uri).replace("8080", port)
    env = dict(cli.env)
    if Path(cli.argv0[0]).name == "sms-outbox":
        env["PATH"] = f"{Path(cli.argv0[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-e", "-c", script], env=env, cwd=cli.cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Flowroute simulator listening on http://127.0.0.1:{port}" in result.stdout
    assert re.search(r"^\s+sent\s+3$", result.stdout, re.M), result.stdout
