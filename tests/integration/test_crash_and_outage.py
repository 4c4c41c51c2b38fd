"""A daemon killed mid-batch, and a database that goes away: nothing lost, nothing doubled."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.integration.helpers import Db, all_terminal, keys_dir, numbers, seed, states, wait_for
from tests.processes import stop
from tests.servers.mongo_server import MongoServer

OUTAGE_SECONDS = 6


@pytest.mark.slow
def test_sigkill_mid_batch_another_daemon_finishes_and_the_in_doubt_send_is_unknown(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    recipients = numbers(30)
    seed(db, recipients, keys_dir(cli.env))
    cli.env.update(
        SMS_OUTBOX_DISPATCH__BATCH_SIZE="10",
        SMS_OUTBOX_DISPATCH__LEASE_SECONDS="6",
        SMS_OUTBOX_FLOWROUTE__TIMEOUT_SECONDS="5",
        # One send at a time, so the hanging request is the only one in flight at the kill;
        # with more, each request out at that moment would be in doubt the same way.
        SMS_OUTBOX_DISPATCH__CONCURRENCY="1",
    )
    first = cli.popen("run")
    wait_for(lambda: len(simulator.messages()) >= 3, 60, "the first daemon to send three")
    # The next request reaches Flowroute and is accepted, but its answer never comes back
    # before the daemon dies: the classic in-doubt send.
    simulator.delay_next(60, accept=True)
    before = simulator.attempts()
    wait_for(lambda: simulator.attempts() > before, 30, "the request that will hang")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    in_doubt = simulator.messages()[-1].to

    second = cli.popen("run")
    try:
        wait_for(lambda: all_terminal(db, len(recipients)), 120, "every message to settle")
    finally:
        stop(second, timeout=60)

    counts = states(db)
    assert counts == Counter({"sent": len(recipients) - 1, "unknown": 1})
    unknown = db["message_status"].find_one({"state": "unknown"})
    assert unknown is not None
    assert unknown["to"] == in_doubt
    assert unknown["error"]["code"] == "lease_expired"
    accepted = Counter(m.to for m in simulator.messages())
    assert set(accepted) == set(recipients), "a message was lost"
    assert set(accepted.values()) == {1}, "a message was sent twice"


@pytest.mark.slow
def test_daemon_survives_a_database_outage_and_resumes(
    cli: Cli, db: Db, simulator: FlowrouteSimulator, mongo_server: MongoServer
) -> None:
    if mongo_server.kind == "external":
        pytest.skip("the outage test must stop the server, which MONGODB_URI does not allow")
    recipients = numbers(24)
    seed(db, recipients, keys_dir(cli.env))
    cli.env.update(
        SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND="4",
        SMS_OUTBOX_MONGODB__TIMEOUT_SECONDS="2",
        SMS_OUTBOX_DISPATCH__BATCH_SIZE="4",
    )
    daemon = cli.popen("run")
    try:
        wait_for(lambda: len(simulator.messages()) >= 8, 60, "sending to be under way")
        mongo_server.stop()
        back_at = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < back_at:
            assert daemon.poll() is None, "the daemon exited during the outage"
            time.sleep(0.2)
        sent_during_outage = len(simulator.messages())
    finally:
        mongo_server.start()
    try:
        wait_for(lambda: all_terminal(db, len(recipients)), 120, "every message to settle")
    finally:
        _, stderr = stop(daemon, timeout=60)

    assert daemon.returncode == 0, stderr[-2000:]
    assert "database.unavailable" in stderr
    assert "database.recovered" in stderr
    assert states(db) == Counter({"sent": len(recipients)})
    accepted = Counter(m.to for m in simulator.messages())
    assert set(accepted) == set(recipients)
    assert set(accepted.values()) == {1}
    assert sent_during_outage < len(recipients)
