"""A wrong Flowroute secret holds the account instead of burning a broadcast; a restart with the
right one sends it. The CLI as a user types it, on the real server and the local Flowroute."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pymongo.database import Database

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli

FRIENDS = ["12065550101", "12065550102", "12065550103", "12065550104", "12065550105"]


def _ok(result: Any) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return str(result.stdout)


def test_a_wrong_secret_holds_the_broadcast_and_the_right_one_sends_it(
    cli: Cli, db: Database[dict[str, Any]], simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", "12065550100"))
    _ok(cli("recipients", "add", *FRIENDS, "--verified"))
    campaign = _ok(cli("broadcast", "--user", "alice", "--body", "Pool opens at 9")).strip()
    right = cli.env["SMS_OUTBOX_FLOWROUTE__SECRET_KEY"]
    cli.env.update(
        SMS_OUTBOX_FLOWROUTE__SECRET_KEY="wrong-secret", SMS_OUTBOX_DISPATCH__BATCH_SIZE="3"
    )
    # One send at a time: with several in flight, each request already out meets the refusal.
    cli.env["SMS_OUTBOX_DISPATCH__CONCURRENCY"] = "1"

    held_run = cli("run", "--until-idle")

    assert held_run.returncode == 0, held_run.stderr
    assert simulator.messages() == []
    assert simulator.attempts() == 1, "one refusal is enough to stop sending"
    assert held_run.stderr.count('"account.held"') == 1
    summary = json.loads(_ok(cli("status", "--campaign", campaign, "--json")))
    assert summary["states"] == {"queued": len(FRIENDS)}
    assert summary["reasons"] == {"account_held:401": 3}
    assert summary["account"]["held"] is True
    assert summary["account"]["code"] == "401"
    children = db["outbox"].find({"campaign": campaign})
    assert {child["attempts"] for child in children} == {0}
    account = _ok(cli("status"))
    assert "held since" in account and "401" in account
    assert "wrong-secret" not in held_run.stderr + account

    cli.env.update(SMS_OUTBOX_FLOWROUTE__SECRET_KEY=right)
    resumed = cli("run", "--until-idle")

    assert resumed.returncode == 0, resumed.stderr
    assert '"account.resumed"' in resumed.stderr
    summary = json.loads(_ok(cli("status", "--campaign", campaign, "--json")))
    assert summary["states"] == {"sent": len(FRIENDS)}
    assert summary["account"] == {"held": False}
    assert Counter(m.to for m in simulator.messages()) == Counter(FRIENDS)
    assert _ok(cli("status")).strip() == "account     sending"
