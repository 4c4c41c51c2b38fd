"""Metrics and health, scraped over HTTP from a running `sms-outbox run`."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pymongo.database import Database

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.e2e.observe import free_port, get, metric, wait_for
from tests.processes import stop

SOURCE = "12065550100"
NUMBERS = [f"1206555{n:04d}" for n in range(120, 126)]


def _ok(result: object) -> str:
    assert getattr(result, "returncode", 1) == 0, getattr(result, "stderr", "")
    return str(getattr(result, "stdout", ""))


@pytest.mark.slow
def test_a_running_daemon_serves_metrics_health_and_readiness(
    cli: Cli, simulator: FlowrouteSimulator, db: Database[dict[str, Any]]
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", *NUMBERS, "--verified"))
    for number in NUMBERS:
        _ok(cli("enqueue", "--user", "alice", "--to", number, "--body", "hi"))
    # Anyone with write access, without alice's signing key.
    db["outbox"].insert_one({"user": "alice", "to": NUMBERS[0], "body": "forged"})
    simulator.fail_next(503)
    simulator.fail_next(400, detail="bad request")
    base = f"http://127.0.0.1:{free_port()}"
    cli.env["SMS_OUTBOX_METRICS__LISTEN"] = base.removeprefix("http://")
    daemon = cli.popen("run")
    try:
        wait_for(lambda: get(base + "/healthz")[0] == 200, "/healthz")

        def settled() -> str | None:
            status, text = get(base + "/metrics")
            sent = metric(text, 'sms_outbox_messages{state="sent"}')
            return text if status == 200 and sent == len(NUMBERS) - 1 else None

        text = wait_for(settled, "every message to be settled in the metrics")
        assert metric(text, 'sms_outbox_sends_total{outcome="202"}') == len(NUMBERS) - 1
        assert metric(text, 'sms_outbox_sends_total{outcome="5xx"}') == 1
        assert metric(text, 'sms_outbox_sends_total{outcome="4xx"}') == 1
        assert metric(text, 'sms_outbox_send_seconds_count{outcome="202"}') == len(NUMBERS) - 1
        assert metric(text, 'sms_outbox_messages{state="failed"}') == 1
        reason = 'sms_outbox_messages_by_reason{reason="signature",state="rejected"}'
        assert metric(text, reason) == 1
        assert metric(text, "sms_outbox_queue_depth") == 0
        assert metric(text, "sms_outbox_account_held") == 0
        assert "1206555" not in text  # no phone number ever becomes a label
        assert get(base + "/readyz") == (200, "ok: database reachable; account active\n")
        assert get(base + "/metrics", method="POST")[0] == 405
        assert get(base + "/nothing")[0] == 404
        assert cli("check").returncode == 0  # the container's HEALTHCHECK asks /healthz
    finally:
        _, stderr = stop(daemon)
    assert daemon.returncode == 0, stderr
    assert "metrics.listening" in stderr
    gone = cli("check")
    assert gone.returncode == 69 and "no daemon answered" in gone.stderr


@pytest.mark.slow
def test_readiness_fails_while_the_database_is_unreachable_but_the_daemon_stays_alive(
    cli: Cli,
) -> None:
    cli.env["SMS_OUTBOX_MONGODB__URI"] = f"mongodb://127.0.0.1:{free_port()}"
    cli.env["SMS_OUTBOX_MONGODB__TIMEOUT_SECONDS"] = "0.3"
    base = f"http://127.0.0.1:{free_port()}"
    cli.env["SMS_OUTBOX_METRICS__LISTEN"] = base.removeprefix("http://")
    daemon = cli.popen("run")
    try:
        outages = 'sms_outbox_database_outages_total{during="cycle"}'
        wait_for(lambda: metric(get(base + "/metrics")[1], outages) == 1, "an outage counted")
        status, body = get(base + "/readyz")
        assert status == 503 and "database unreachable" in body
        assert get(base + "/healthz")[0] == 200
        assert metric(get(base + "/metrics")[1], "sms_outbox_database_up") == 0
    finally:
        _, stderr = stop(daemon)
    assert daemon.returncode == 0, stderr


def test_a_bad_listen_address_is_a_configuration_error(cli: Cli) -> None:
    cli.env["SMS_OUTBOX_METRICS__LISTEN"] = "9100"
    result = cli("run", "--until-idle")
    assert result.returncode == 78
    assert "metrics.listen" in result.stderr


def test_a_metrics_port_in_use_stops_start_up_with_one_line(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cli.env["SMS_OUTBOX_METRICS__LISTEN"] = f"127.0.0.1:{port}"
        result = cli("run", "--until-idle")
    assert result.returncode == 78
    assert f"metrics.listen: cannot listen on 127.0.0.1:{port}" in result.stderr
