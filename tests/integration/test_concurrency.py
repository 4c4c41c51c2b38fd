"""Several daemons, as separate processes, share one database without doubling a message."""

from __future__ import annotations

from collections import Counter

import pytest

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.integration.helpers import Db, keys_dir, numbers, seed, states

MESSAGES = 1000
DAEMONS = 4


@pytest.mark.slow
def test_four_daemons_drain_1000_messages_each_sent_exactly_once(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    recipients = numbers(MESSAGES)
    seed(db, recipients, keys_dir(cli.env))
    cli.env["SMS_OUTBOX_DISPATCH__BATCH_SIZE"] = "25"
    daemons = [cli.popen("run", "--until-idle") for _ in range(DAEMONS)]
    for daemon in daemons:
        _, stderr = daemon.communicate(timeout=600)
        assert daemon.returncode == 0, stderr[-2000:]
    # --until-idle lets a daemon leave while another still holds a batch; finish any leftovers.
    leftover = cli("run", "--until-idle", timeout=600)
    assert leftover.returncode == 0, leftover.stderr[-2000:]

    accepted = Counter(m.to for m in simulator.messages())
    assert len(accepted) == MESSAGES
    assert set(accepted.values()) == {1}, "a message was accepted by Flowroute more than once"
    assert states(db) == Counter({"sent": MESSAGES})
    claimers = {doc.get("last_claim_token") for doc in db["outbox"].find()}
    assert len(claimers) == MESSAGES
