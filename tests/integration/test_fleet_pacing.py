"""Daemon processes sharing one Flowroute account stay inside its limit together."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from jobs.rules.slots import WINDOW_SECONDS, SlotPlan
from jobs.simulator.records import Answer
from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import ACCESS_KEY, SECRET_KEY, Cli
from tests.integration.helpers import Db, all_terminal, keys_dir, numbers, seed, states, wait_for
from tests.processes import stop

RATE = 5
# The suite shares a small machine with everything else, so a request can reach the local
# Flowroute tens of milliseconds late; a wider margin than the default keeps these runs about
# sharing the limit rather than about the machine's load.
MARGIN_MS = 100
PLAN = SlotPlan(RATE, MARGIN_MS / 1000)
# A killed daemon may waste what is left of its block; anything longer is a stall.
LONGEST_GAP = PLAN.block_seconds + PLAN.spacing + 0.5


class RefusalLog(FlowrouteSimulator):
    """The local Flowroute, noting when each attempt it answers with 429 arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: list[float] = []

    def _send(self, auth: str, content_type: str, raw: bytes) -> Answer:
        arrived = time.monotonic()
        answer = super()._send(auth, content_type, raw)
        if answer[0] == 429:
            self.refused.append(arrived)
        return answer


@pytest.fixture
def limited() -> Iterator[FlowrouteSimulator]:
    """The local Flowroute with the account's real limit, counted in a strict 1000 ms window."""
    with FlowrouteSimulator(ACCESS_KEY, SECRET_KEY, rate_per_second=RATE) as sim:
        yield sim


@contextmanager
def daemons(cli: Cli, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` daemon processes, stopped (killed if they hang) whatever happens."""
    procs = [cli.popen("run") for _ in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def fleet_env(cli: Cli, sim: FlowrouteSimulator) -> None:
    cli.env.update(
        SMS_OUTBOX_FLOWROUTE__BASE_URL=sim.url,
        SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND=str(RATE),
        SMS_OUTBOX_FLOWROUTE__TIMEOUT_SECONDS="5",
        SMS_OUTBOX_DISPATCH__PACING="fleet",
        SMS_OUTBOX_DISPATCH__PACING_MARGIN_MS=str(MARGIN_MS),
        SMS_OUTBOX_DISPATCH__BATCH_SIZE="3",
        SMS_OUTBOX_DISPATCH__LEASE_SECONDS="8",
        SMS_OUTBOX_LOGGING__LEVEL="warning",
    )


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2, 4])
def test_daemons_sharing_an_account_are_never_refused_and_send_each_message_once(
    cli: Cli, db: Db, limited: FlowrouteSimulator, count: int
) -> None:
    recipients = numbers(30)
    seed(db, recipients, keys_dir(cli.env))
    fleet_env(cli, limited)

    with daemons(cli, count) as procs:
        wait_for(lambda: all_terminal(db, len(recipients)), 120, "every message to settle")
        assert all(proc.poll() is None for proc in procs), "a daemon exited"

    assert limited.attempts() - len(limited.messages()) == 0, "Flowroute refused attempts (429)"
    accepted = Counter(m.to for m in limited.messages())
    assert set(accepted) == set(recipients)
    assert set(accepted.values()) == {1}
    assert states(db) == Counter({"sent": len(recipients)})
    holders = {doc["holder"] for doc in db["pacing"].find({"block": {"$exists": True}})}
    assert len(holders) == count, "every daemon took its share of the blocks"


@pytest.mark.slow
def test_a_daemon_killed_mid_broadcast_does_not_stall_the_others(
    cli: Cli, db: Db, limited: FlowrouteSimulator
) -> None:
    recipients = numbers(45)
    seed(db, recipients, keys_dir(cli.env))
    fleet_env(cli, limited)

    with daemons(cli, 3) as procs:
        wait_for(lambda: len(limited.messages()) >= 10, 60, "sending to be under way")
        procs[0].send_signal(signal.SIGKILL)
        killed_at = len(limited.attempt_times())
        wait_for(lambda: all_terminal(db, len(recipients)), 120, "every message to settle")

    assert limited.attempts() - len(limited.messages()) == 0, "Flowroute refused attempts (429)"
    # Until the killed daemon's claims are recovered, the other two keep the pace.
    after = limited.attempt_times()[killed_at - 1 : killed_at + 15]
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert max(gaps) < LONGEST_GAP, f"the others stalled for {max(gaps):.2f} s"
    accepted = Counter(m.to for m in limited.messages())
    assert set(accepted.values()) == {1}, "a message was sent twice"
    counts = states(db)
    # The killed daemon may have had one request out with no answer: that one is unknown.
    assert counts["sent"] + counts["unknown"] == len(recipients)
    assert counts["unknown"] <= 1
    assert counts["sent"] == len(accepted)


def refuse_once_more(sim: RefusalLog, count: int) -> None:
    """Once 8 * `count` messages are accepted, answer the next attempt with 429; wait for it."""
    wait_for(lambda: len(sim.messages()) >= 8 * count, 60, "sends under way")
    sim.fail_next(429)
    wait_for(lambda: len(sim.refused) >= count, 30, "Flowroute's 429")


@dataclass
class Refusals:
    """Two daemons met three forced 429s: when each refusal came and which daemon it met, and
    when each daemon made its accepted attempts (monotonic time of arrival at Flowroute)."""

    refused: list[tuple[float, int]]
    sent_by: dict[int, list[float]]


@pytest.fixture
def refusals(cli: Cli, db: Db) -> Refusals:
    recipients = numbers(36)
    seed(db, recipients, keys_dir(cli.env))
    sim = RefusalLog(ACCESS_KEY, SECRET_KEY, rate_per_second=RATE)
    with sim:
        fleet_env(cli, sim)
        cli.env["SMS_OUTBOX_LOGGING__LEVEL"] = "info"
        procs = [cli.popen("run") for _ in range(2)]
        try:
            # Three refusals while both daemons send, each at whatever point of a block it falls.
            for count in range(1, 4):
                refuse_once_more(sim, count)
            wait_for(lambda: all_terminal(db, len(recipients)), 120, "every message to settle")
            assert all(proc.poll() is None for proc in procs), "a daemon exited"
        finally:
            logs = [stop(proc, timeout=60)[1] for proc in procs]
        attempts = sim.attempt_times()

    assert len(sim.refused) == 3, "only the forced refusals: the daemons kept to the limit"
    accepted = Counter(m.to for m in sim.messages())
    assert set(accepted) == set(recipients) and set(accepted.values()) == {1}
    assert states(db) == Counter({"sent": len(recipients)})
    # Who sent what, from each daemon's log: a message's id, then its number.
    events = [(daemon, json.loads(line)) for daemon, log in enumerate(logs)
              for line in log.splitlines() if line.startswith("{")]  # fmt: skip
    number = {str(doc["_id"]): doc["to"] for doc in db["outbox"].find({}, {"to": 1})}
    sender = {number[e["message_id"]]: d for d, e in events if e["event"] == "message.sent"}
    met = sorted((e["timestamp"], d) for d, e in events
                 if e["event"] == "message.retry" and e.get("code") == "429")  # fmt: skip
    assert len(met) == 3, met
    # The attempts that were accepted arrived in the order Flowroute accepted them.
    refused_attempts = {min(t for t in attempts if t >= at) for at in sim.refused}
    arrivals = [t for t in attempts if t not in refused_attempts]
    sent_by: dict[int, list[float]] = {0: [], 1: []}
    for at, message in zip(arrivals, sim.messages(), strict=True):
        sent_by[sender[message.to]].append(at)
    assert sent_by[0] and sent_by[1], "both daemons were sending"
    return Refusals([(at, d) for at, (_, d) in zip(sim.refused, met, strict=True)], sent_by)


@pytest.mark.slow
def test_the_daemon_that_meets_a_429_sends_nothing_for_a_window_plus_margin(
    refusals: Refusals,
) -> None:
    for refused_at, daemon in refusals.refused:
        later = [round(t - refused_at, 3) for t in refusals.sent_by[daemon] if t > refused_at]
        assert later[0] >= WINDOW_SECONDS, f"daemon {daemon} tried again {later[0]} s after 429"


@pytest.mark.slow
@pytest.mark.xfail(
    reason="a daemon reads the shared penalty once per block, one spacing before the block's "
    "first slot: a 429 that comes after that read lets the rest of that block go",
    strict=False,
)
def test_every_other_daemon_of_the_account_sends_nothing_for_a_window(refusals: Refusals) -> None:
    for refused_at, daemon in refusals.refused:
        other = refusals.sent_by[1 - daemon]
        inside = [round(t - refused_at, 3) for t in other if 0 < t - refused_at < WINDOW_SECONDS]
        assert inside == [], f"the other daemon tried {inside} s after the 429"
