"""The loop closed as a user runs it: `sms-outbox run` with webhooks.listen set, a broadcast,
Flowroute posting receipts and an inbound STOP."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from pymongo.database import Database

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.servers.ports import free_port

SOURCE = "12065550100"
FRIENDS = ["12065550101", "12065550102", "12065550103"]
TOKEN = "e2e0f5c1a9d84b7e6f3a"


def until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout


@pytest.fixture
def daemon(cli: Cli) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    public = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    cli.env.update(
        SMS_OUTBOX_WEBHOOKS__LISTEN=f"127.0.0.1:{port}",
        SMS_OUTBOX_WEBHOOKS__PUBLIC_URL=public,
        SMS_OUTBOX_RECEIPTS__CHECK_SECONDS="0.5",
    )
    process = cli.popen("run")
    try:
        yield process, public
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def test_run_serves_webhooks_applies_receipts_and_answers_stop(
    cli: Cli,
    simulator: FlowrouteSimulator,
    db: Database[dict[str, Any]],
    daemon: tuple[subprocess.Popen[str], str],
) -> None:
    process, public = daemon
    ok(cli("senders", "grant", "alice", SOURCE))
    ok(cli("recipients", "add", *FRIENDS, "--verified"))
    campaign = ok(cli("broadcast", "--user", "alice", "--body", "Pool opens at 9")).strip()
    until(lambda: len(simulator.messages()) == 3, "the broadcast to go out")
    assert {m.dlr_callback for m in simulator.messages()} == {public + "/dlr"}
    ids = {m.to: m.id for m in simulator.messages()}

    assert simulator.post_receipts([ids[FRIENDS[0]], ids[FRIENDS[1]]], duplicate=True) == [200] * 8
    assert simulator.post_receipts([ids[FRIENDS[2]]], final_status="delivery failure") == [200] * 2
    simulator.sms_callback = public + "/inbound"
    assert simulator.send_inbound(FRIENDS[0], SOURCE, "Stop")[0] == 200
    assert requests.post(public + "/elsewhere", json={}, timeout=5).status_code == 404

    def settled() -> bool:
        summary = json.loads(ok(cli("status", "--campaign", campaign, "--json")))
        return bool(summary["delivery"]["delivered"] == 2 and summary["delivery"]["undelivered"])

    until(settled, "the receipts to be applied")
    until(lambda: len(simulator.messages()) == 4, "the STOP confirmation")
    reply = simulator.messages()[-1]
    assert (reply.to, reply.from_) == (FRIENDS[0], SOURCE)
    assert "unsubscribed" in reply.body
    people = {r["phone"]: r for r in json.loads(ok(cli("recipients", "list", "--json")))}
    assert people[FRIENDS[0]]["opted_out"]["text"] == "Stop"

    summary = json.loads(ok(cli("status", "--campaign", campaign, "--json")))
    assert summary["delivery"]["rate"] == pytest.approx(2 / 3)
    assert "delivery rate 66.7%" in ok(cli("status", "--campaign", campaign))
    rates = json.loads(ok(cli("status", "--json")))["opt_outs"]
    assert [(r["source"], r["opt_outs"], r["sent"], r["over"]) for r in rates] == [
        (SOURCE, 1, 3, True)
    ]
    assert "OVER THRESHOLD" in ok(cli("status"))

    # A START posted by someone who knows the URL, not by Flowroute: kept, shown, ignored.
    forged = {"from": FRIENDS[0], "to": SOURCE, "body": "START"}
    assert requests.post(public + "/inbound", json=forged, timeout=5).status_code == 200

    def shown() -> bool:
        return bool(json.loads(ok(cli("status", "--json")))["unverified"]["count"] == 1)

    until(shown, "the forged START to be set aside")
    (row,) = json.loads(ok(cli("status", "--json")))["unverified"]["latest"]
    assert (row["kind"], row["body"], row["detail"]) == (
        "inbound", "START", "the callback carried no message id",
    )  # fmt: skip
    assert "unverified  1 callbacks" in ok(cli("status"))
    assert len(simulator.messages()) == 4
    assert json.loads(ok(cli("recipients", "list", "--json")))[0]["opted_out"]["confirmed"] is True

    # A forged STOP is honoured (the safe side), listed as unconfirmed, and not answered.
    forged_stop = {"from": FRIENDS[1], "to": SOURCE, "body": "STOP"}
    assert requests.post(public + "/inbound", json=forged_stop, timeout=5).status_code == 200
    until(lambda: "not confirmed" in ok(cli("recipients", "list")), "the forged STOP's opt-out")
    (line,) = [x for x in ok(cli("recipients", "list")).splitlines() if x.startswith(FRIENDS[1])]
    assert line.startswith(f"{FRIENDS[1]}\topted out (texted 'STOP' at ")
    assert line.endswith("(STOP not confirmed by Flowroute)")
    assert len(simulator.messages()) == 4

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "optout.rate_high" in stderr
    assert TOKEN not in stderr


def test_the_webhooks_command_serves_the_receiver_alone(
    cli: Cli, db: Database[dict[str, Any]]
) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    cli.env.update(
        SMS_OUTBOX_WEBHOOKS__LISTEN=f"127.0.0.1:{port}", SMS_OUTBOX_WEBHOOKS__PUBLIC_URL=public
    )
    process = cli.popen("webhooks")
    try:
        receipt = {"data": {"id": "mdr2-" + "a" * 32, "type": "delivery_receipt",
                            "attributes": {"level": 2, "status": "delivered"}}}  # fmt: skip

        def answered() -> bool:
            try:
                return requests.post(public + "/dlr", json=receipt, timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        until(answered, "the receiver to answer")
        assert requests.post(public + "/dlr", data=b"{", timeout=5).status_code == 400
        assert db["inbox"].count_documents({"kind": "dlr"}) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "webhook.malformed" in stderr
    assert TOKEN not in stderr


def test_the_webhooks_command_needs_a_listen_address(cli: Cli) -> None:
    result = cli("webhooks")
    assert result.returncode == 78
    assert "webhooks.listen" in result.stderr
