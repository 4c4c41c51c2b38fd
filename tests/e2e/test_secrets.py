"""Secrets never leak: not into logs, status documents, outbox documents or error messages."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from jobs.keys import KeyRing
from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli, cli_env
from tests.integration.helpers import Db, wait_for
from tests.servers.mongo_server import MongoServer, add_user

ACCESS = "AK-leak-canary-5d1e"
SECRET = "SK-leak-canary-77b0"
DAEMON_KEY = "daemon-key-leak-canary-0c4f"
PASSWORD = "pw-leak-canary-a93"
WRONG_PASSWORD = "pw-wrong-canary-6b2"
SOURCE, FRIEND, STOPPED = "12065550100", "12065550101", "12065550102"


@pytest.fixture
def daemon_db(auth_server: MongoServer) -> Iterator[tuple[str, Db]]:
    """A database on the server that requires a login, and the URI of the user the CLI and the
    daemon log in as, with PASSWORD in it."""
    suffix = uuid.uuid4().hex[:12]
    uri = add_user(auth_server.uri, f"sms_daemon_{suffix}", PASSWORD)
    admin: MongoClient[dict[str, Any]] = MongoClient(
        auth_server.uri, tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    name = f"t_{suffix}"
    yield uri, admin[name]
    try:
        admin.drop_database(name)
        admin.admin.command("dropUser", f"sms_daemon_{suffix}")
    finally:
        admin.close()


def test_no_secret_appears_in_any_output_or_record(
    daemon_db: tuple[str, Db], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    uri, db = daemon_db
    keys = tmp_path / "keys"
    outputs: list[str] = []

    def run(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
        result = cli(*args, "--until-idle") if args == ("run",) else cli(*args)
        outputs.extend([result.stdout, result.stderr])
        return result

    with FlowrouteSimulator(ACCESS, SECRET, rate_per_second=None) as sim:
        env = cli_env(
            uri,
            db.name,
            sim.url,
            keys,
            SMS_OUTBOX_FLOWROUTE__ACCESS_KEY=ACCESS,
            SMS_OUTBOX_FLOWROUTE__SECRET_KEY=SECRET,
            SMS_OUTBOX_SECURITY__DAEMON_KEY=DAEMON_KEY,
            SMS_OUTBOX_FLOWROUTE__TIMEOUT_SECONDS="1",
            SMS_OUTBOX_DISPATCH__LEASE_SECONDS="3",
            SMS_OUTBOX_DISPATCH__MAX_ATTEMPTS="1",
            SMS_OUTBOX_LOGGING__LEVEL="debug",
        )
        cli = Cli(env, tmp_path)
        request.addfinalizer(cli.stop_all)
        assert run(cli, "senders", "grant", "alice", SOURCE).returncode == 0
        signing_key = KeyRing(keys).user_key("alice")
        assert signing_key
        assert run(cli, "recipients", "add", FRIEND, STOPPED, "--verified").returncode == 0

        def send(body: str, to: str = FRIEND) -> None:
            result = run(cli, "enqueue", "--user", "alice", "--to", to, "--body", body)
            assert result.returncode == 0, result.stderr

        # Success, then every error path Flowroute can give.
        send("ok")
        run(cli, "run")
        for status in (500, 401, 403, 422, 429):
            sim.fail_next(status)
            send(f"error {status}")
            run(cli, "run")
        sim.opt_out(SOURCE, STOPPED)
        send("opted out", STOPPED)
        run(cli, "run")
        sim.delay_next(3)
        send("timeout")
        run(cli, "run")
        # A broadcast, fanned out and signed by the daemon.
        assert run(cli, "broadcast", "--user", "alice", "--body", "all").returncode == 0
        run(cli, "run")
        # A crash mid-send.
        send("crash")
        sim.delay_next(30)
        daemon = cli.popen("run")
        wait_for(lambda: _in_flight(db), 30, "a send in flight")
        daemon.send_signal(signal.SIGKILL)
        outputs.extend(daemon.communicate(timeout=30))

    # Flowroute unreachable, and a configuration error.
    cli.env["SMS_OUTBOX_FLOWROUTE__BASE_URL"] = "http://127.0.0.1:9"
    send("unreachable")
    run(cli, "run")
    # A wrong password: refused by the server, in one line that holds neither password.
    cli.env["SMS_OUTBOX_MONGODB__URI"] = uri.replace(PASSWORD, WRONG_PASSWORD)
    refused = run(cli, "run")
    assert refused.returncode == 78, refused.stderr
    assert "setting mongodb.uri: the server refused its credentials" in refused.stderr
    cli.env["SMS_OUTBOX_MONGODB__URI"] = uri
    cli.env["SMS_OUTBOX_DISPATCH__BATCH_SIZE"] = "many"
    assert run(cli, "run").returncode == 78

    records = [str(doc) for name in ("outbox", "message_status") for doc in db[name].find()]
    assert len(records) > 20, "the run should have produced many records to search"
    haystack = "\n".join(outputs + records)
    assert "message.sent" in haystack and "provider" in haystack
    assert PASSWORD in uri and "sms_daemon_" in uri
    for secret in (ACCESS, SECRET, DAEMON_KEY, PASSWORD, WRONG_PASSWORD, signing_key, uri):
        assert secret not in haystack


def _in_flight(db: Db) -> bool:
    doc: Any = db["outbox"].find_one({"in_flight": True})
    return doc is not None
