"""Sends in flight: one daemon keeps several requests open to a slow Flowroute, each still claimed,
fenced, paced and recorded once, and never over the account's limit."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from jobs.flowroute import FlowrouteClient, SmsProvider
from jobs.simulator.server import FlowrouteSimulator
from scheduler.settings import Settings
from scheduler.wiring import build_dispatcher, pooled_session, start_up
from tests.conftest import ACCESS_KEY, SECRET_KEY, Cli
from tests.integration.helpers import Db, keys_dir, numbers, seed, states, wait_for
from tests.servers.mongo_server import MongoServer

RATE = 5
MESSAGES = 20
LATENCY = 0.6  # seconds Flowroute takes to answer: more than one send per answer is needed


class Overlap:
    """A provider that counts how many of its requests are open at once."""

    def __init__(self, provider: SmsProvider) -> None:
        self.provider = provider
        self.open = 0
        self.most = 0
        self._lock = threading.Lock()

    def send(self, to: str, source: str, body: str) -> str:
        with self._lock:
            self.open += 1
            self.most = max(self.most, self.open)
        try:
            return self.provider.send(to, source, body)
        finally:
            with self._lock:
                self.open -= 1


def settings(uri: str, db: Db, url: str, keys: Path, pacing: str) -> Settings:
    return Settings.model_validate(
        {
            "mongodb": {"uri": uri, "database": db.name},
            "flowroute": {
                "base_url": url, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
                "rate_per_second": RATE,
            },
            "dispatch": {"pacing": pacing, "lease_seconds": 600},
            "quiet_hours": {"enabled": False},
            "security": {"keys_dir": str(keys)},
        }
    )  # fmt: skip


@pytest.mark.parametrize("pacing", ["fleet", "local"])
def test_a_slow_flowroute_gets_several_requests_at_once_and_never_more_than_the_limit(
    mongo_server: MongoServer, db: Db, tmp_path: Path, pacing: str
) -> None:
    seed(db, numbers(MESSAGES), tmp_path / "keys")
    with FlowrouteSimulator(ACCESS_KEY, SECRET_KEY, rate_per_second=RATE) as simulator:
        simulator.delay_next(LATENCY, count=MESSAGES * 2)
        config = settings(mongo_server.uri, db, simulator.url, tmp_path / "keys", pacing)
        access, secret = config.require_flowroute()
        provider = Overlap(
            FlowrouteClient(simulator.url, access, secret, 10.0, session=pooled_session(RATE))
        )
        dispatcher = build_dispatcher(config, db, provider=provider)
        assert dispatcher.config.concurrency == RATE  # `auto`: one second of the limit
        start_up(dispatcher)
        deadline = time.monotonic() + 120
        while states(db)["sent"] < MESSAGES:
            assert time.monotonic() < deadline, states(db)
            if not dispatcher.run_once().claimed:
                dispatcher.finish()
        dispatcher.finish()

        assert provider.most > 1, "requests were sent one at a time"
        assert simulator.attempts() == MESSAGES, "a request was refused (429) or repeated"
        accepted = Counter(m.to for m in simulator.messages())
        assert set(accepted.values()) == {1} and len(accepted) == MESSAGES
    assert states(db) == Counter({"sent": MESSAGES})
    assert db["outbox"].count_documents({"state": "sending"}) == 0


def test_sigterm_lets_every_send_in_flight_finish_and_be_recorded(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    seed(db, numbers(MESSAGES), keys_dir(cli.env))
    cli.env["SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND"] = str(RATE)
    simulator.delay_next(2.0, count=MESSAGES)  # each answer takes 2 s: several stay open
    daemon = cli.popen("run")
    try:
        wait_for(lambda: len(simulator.messages()) >= 3, 60, "three requests in flight")
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    finally:
        cli.stop_all()

    assert daemon.returncode == 0, stderr[-2000:]
    accepted = {m.to for m in simulator.messages()}
    docs = list(db["outbox"].find())
    sent = {d["to"] for d in docs if d["state"] == "sent"}
    assert len(accepted) >= 3
    assert sent == accepted, "a request that reached Flowroute was not recorded as sent"
    assert all(d["state"] in {"sent", "queued"} for d in docs), Counter(d["state"] for d in docs)
    assert all(d["attempts"] == 0 for d in docs if d["state"] == "queued")
