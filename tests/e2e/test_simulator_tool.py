"""`sms-outbox simulator` as a user runs it: in the foreground, with the real daemon against it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests

from tests.conftest import Cli
from tests.e2e.observe import free_port, get, metric, wait_for
from tests.processes import stop
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
    result = cli("simulator", "--receipts-to", "ftp://example")
    assert result.returncode == 2
    assert "--receipts-to must be an http:// or https:// URL" in result.stderr


def _simulator(cli: Cli, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*cli.argv0, "simulator", "--port", str(free_port()), "--rate", "0",
         "--receipt-delay", "0.1", *options],
        env=cli.env, cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _basic(printed: dict[str, str]) -> dict[str, str]:
    credentials = printed["SMS_OUTBOX_FLOWROUTE__ACCESS_KEY"] + ":"
    credentials += printed["SMS_OUTBOX_FLOWROUTE__SECRET_KEY"]
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.mark.slow
def test_receipts_and_a_stop_from_the_simulator_reach_the_daemon_s_webhooks(cli: Cli) -> None:
    hooks = free_port()
    public = f"http://127.0.0.1:{hooks}/hooks/f00dfacecafe0123456789"
    base = f"http://127.0.0.1:{free_port()}"
    simulator = _simulator(cli, "--undelivered", NUMBERS[1], "--inbound-to", public + "/inbound")
    daemon: subprocess.Popen[str] | None = None
    try:
        printed = _banner(simulator)
        cli.env.update(printed)
        cli.env.update(
            SMS_OUTBOX_WEBHOOKS__LISTEN=f"127.0.0.1:{hooks}",
            SMS_OUTBOX_WEBHOOKS__PUBLIC_URL=public,
            SMS_OUTBOX_RECEIPTS__CHECK_SECONDS="0.5",
            SMS_OUTBOX_METRICS__LISTEN=base.removeprefix("http://"),
            SMS_OUTBOX_QUIET_HOURS__ENABLED="false",
        )
        _ok(cli("senders", "grant", "alice", SOURCE))
        _ok(cli("recipients", "add", *NUMBERS, "--verified"))
        campaign = _ok(cli("broadcast", "--user", "alice", "--body", "Pool opens at 9")).strip()
        daemon = cli.popen("run")

        def delivery() -> dict[str, Any] | None:
            summary = json.loads(_ok(cli("status", "--campaign", campaign, "--json")))
            found: dict[str, Any] = summary["delivery"]
            return found if found["delivered"] + found["undelivered"] == 3 else None

        found = wait_for(delivery, "every receipt to be applied")
        assert (found["delivered"], found["undelivered"]) == (2, 1)

        sim_base = printed["SMS_OUTBOX_FLOWROUTE__BASE_URL"]
        stop_text = {"from": f"+{NUMBERS[0]}", "to": SOURCE, "body": "STOP"}
        posted = requests.post(
            f"{sim_base}/simulator/inbound", json=stop_text, headers=_basic(printed), timeout=10
        )
        assert posted.status_code == 200, posted.text
        assert posted.json()["data"]["callback_status"] == 200
        unauthenticated = requests.post(f"{sim_base}/simulator/inbound", json=stop_text, timeout=10)
        assert unauthenticated.status_code == 401

        def opted_out() -> dict[str, Any] | None:
            people = {r["phone"]: r for r in json.loads(_ok(cli("recipients", "list", "--json")))}
            evidence: dict[str, Any] | None = people[NUMBERS[0]].get("opted_out")
            return evidence or None

        assert wait_for(opted_out, "the STOP to be applied")["text"] == "STOP"
        (rate,) = json.loads(_ok(cli("status", "--json")))["opt_outs"]
        assert (rate["source"], rate["opt_outs"], rate["sent"]) == (SOURCE, 1, 3)

        def counted() -> str | None:
            status, text = get(base + "/metrics")
            done = status == 200 and metric(text, 'sms_outbox_opt_outs_total{via="stop"}') == 1
            return text if done else None

        text = wait_for(counted, "the opt-out in the metrics")
        assert (metric(text, 'sms_outbox_receipts_total{state="delivered"}') or 0) >= 2
        assert metric(text, 'sms_outbox_receipts_total{state="undelivered"}') == 1
    finally:
        if daemon is not None:
            _, err = stop(daemon)
        out, sim_err = stop(simulator)
    assert daemon is not None and daemon.returncode == 0, err
    assert simulator.returncode == 0, sim_err
    assert "receipts for the message to 12065550142: delivery failure, posted 200 200" in out
    assert "inbound text from 12065550141 to 12065550100: posted 200" in out
    assert "f00dfacecafe0123456789" not in out  # the webhook URL's token is a secret


class _Capture(BaseHTTPRequestHandler):
    posted: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).posted.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def capture() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    posted: list[dict[str, Any]] = []
    handler = type("Handler", (_Capture,), {"posted": posted})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", posted
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_receipts_go_to_receipts_to_and_inbound_texts_need_a_callback(
    cli: Cli, capture: tuple[str, list[dict[str, Any]]]
) -> None:
    url, posted = capture
    simulator = _simulator(cli, "--receipts-to", url + "/dlr", "--hang-rate", "1",
                           "--hang-seconds", "0.2")  # fmt: skip
    try:
        printed = _banner(simulator)
        base, auth = printed["SMS_OUTBOX_FLOWROUTE__BASE_URL"], _basic(printed)
        send = {"data": {"type": "message", "attributes": {
            "to": NUMBERS[0], "from": SOURCE, "body": "hi", "dlr_callback": "http://127.0.0.1:9/x",
        }}}  # fmt: skip
        answer = requests.post(f"{base}/v2.1/messages", json=send, headers=auth, timeout=10)
        assert answer.status_code == 202  # answered late, but accepted: receipts follow
        message_id = answer.json()["data"]["id"]
        wait_for(lambda: len(posted) == 2, "both receipts at --receipts-to")
        receipts = [(p["data"]["id"], p["data"]["attributes"]["level"]) for p in posted]
        assert receipts == [(message_id, 1), (message_id, 2)]
        assert posted[1]["data"]["attributes"]["status"] == "delivered"

        inbound = f"{base}/simulator/inbound"
        text = {"from": NUMBERS[0], "to": SOURCE, "body": "STOP"}
        nowhere = requests.post(inbound, json=text, headers=auth, timeout=10)
        assert nowhere.status_code == 409 and "--inbound-to" in nowhere.text
        bad = requests.post(inbound, json={"from": "nobody", "to": SOURCE, "body": "x"},
                            headers=auth, timeout=10)  # fmt: skip
        assert bad.status_code == 400
        assert requests.get(inbound, headers=auth, timeout=10).status_code == 405
    finally:
        out, err = stop(simulator)
    assert simulator.returncode == 0, err
    assert "receipts for the message to 12065550141: delivered, posted 200 200" in out


def _readme_environment(cli: Cli) -> dict[str, str]:
    """The reader's environment: no setting but the README's own, except the database name and
    the keys folder, which keep the test apart from others and change nothing else."""
    kept = ("SMS_OUTBOX_MONGODB__DATABASE", "SMS_OUTBOX_SECURITY__KEYS_DIR")
    env = {k: v for k, v in cli.env.items() if not k.startswith("SMS_OUTBOX_") or k in kept}
    if Path(cli.argv0[0]).name == "sms-outbox":
        env["PATH"] = f"{Path(cli.argv0[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow
def test_the_readme_try_it_section_runs_as_written(cli: Cli, mongo_server: MongoServer) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = next(
        b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "simulator --port 8080" in b
    )
    port = str(free_port())
    script = block.replace("mongodb://localhost:27017", mongo_server.uri).replace("8080", port)
    env = _readme_environment(cli)
    result = subprocess.run(
        ["bash", "-e", "-c", script], env=env, cwd=cli.cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Flowroute simulator listening on http://127.0.0.1:{port}" in result.stdout
    assert re.search(r"^\s+sent\s+3$", result.stdout, re.M), result.stdout


@pytest.mark.slow
def test_the_readme_receipts_and_stop_example_runs_as_written(
    cli: Cli, mongo_server: MongoServer
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    # The README runs it in the same terminal, after the first example.
    first = next(b for b in blocks if "simulator --port 8080" in b)
    block = first + next(b for b in blocks if "--inbound-to" in b)
    api, hooks = str(free_port()), str(free_port())
    script = block.replace("mongodb://localhost:27017", mongo_server.uri)
    script = script.replace("8080", api).replace("8081", hooks)
    env = _readme_environment(cli)
    # Each step waits for what it needs; the timeout only stops a broken run.
    process = subprocess.Popen(
        ["bash", "-e", "-c", script], env=env, cwd=cli.cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        with contextlib.suppress(ProcessLookupError):  # what a failed step left running
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, out + err
    assert "1 undelivered" in out and "2 delivered" in out, out
    assert "inbound text from 12065550101 to 12065550100: posted 200" in out
    assert re.search(r"12065550101\s+opted out \(texted 'STOP' at ", out), out
    assert re.search(r"text\s+inbound_id=.*text=STOP.*outcome=opted_out", out), out  # `show`
    assert "OVER THRESHOLD" in out, out
