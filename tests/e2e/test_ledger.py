"""The ledger never releases a sent message: a writer who sets a sent message back to `unknown`
with an old `updated_at` (an outbox write, nothing else) gets nothing sent again, whether the
spent id holds the 202 or the daemon died before writing it there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.integration.helpers import keys_dir, seed, wait_for
from tests.processes import stop

Db = Database[dict[str, Any]]
TO = "12065550101"


def _sent_once(cli: Cli, db: Db, simulator: FlowrouteSimulator) -> dict[str, Any]:
    seed(db, [TO], keys_dir(cli.env))
    result = cli("run", "--until-idle")
    assert result.returncode == 0, result.stderr
    assert len(simulator.messages()) == 1
    doc = db["outbox"].find_one({"to": TO}) or {}
    assert doc["state"] == "sent"
    return doc


def _forge_unknown(db: Db, doc: dict[str, Any]) -> None:
    """What the attacker did: an outbox write only."""
    old = datetime.now(UTC) - timedelta(days=2)
    db["outbox"].update_one({"_id": doc["_id"]}, {"$set": {"state": "unknown", "updated_at": old}})


def _reconcile(cli: Cli, db: Db, doc: dict[str, Any]) -> dict[str, Any]:
    """Run the daemon, its checks every half second, until the message is settled."""
    cli.env.update(
        SMS_OUTBOX_RECEIPTS__CHECK_SECONDS="0.5",
        SMS_OUTBOX_RECEIPTS__RECONCILE_AFTER_SECONDS="0",
        SMS_OUTBOX_RECEIPTS__CLOCK_SKEW_SECONDS="1",
    )
    daemon = cli.popen("run")
    try:

        def settled() -> bool:
            # Sent again with its reconciliation recorded: a message queued again by it would
            # be sent (and counted by the simulator) before it reads `sent` here.
            now = db["outbox"].find_one({"_id": doc["_id"]}) or {}
            return now.get("state") == "sent" and "reconciliation" in now

        wait_for(settled, 60, "reconciliation to settle the forged unknown")
    finally:
        _, stderr = stop(daemon, timeout=30)
    assert daemon.returncode == 0, stderr
    return db["outbox"].find_one({"_id": doc["_id"]}) or {}


def test_the_spent_id_keeps_the_202_of_a_sent_message(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    doc = _sent_once(cli, db, simulator)

    (record,) = db["sent_ids"].find({"message_id": doc["_id"]})

    assert record["outcome"] == "sent"
    assert record["provider_id"] == doc["provider_id"] == simulator.messages()[0].id


def test_a_sent_message_forged_back_to_unknown_is_not_sent_again(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    doc = _sent_once(cli, db, simulator)
    _forge_unknown(db, doc)

    final = _reconcile(cli, db, doc)

    assert len(simulator.messages()) == 1
    assert (final["state"], final["provider_id"]) == ("sent", doc["provider_id"])
    assert final["reconciliation"]["source"] == "spent id"
    record = db["sent_ids"].find_one({"message_id": doc["_id"]}) or {}
    assert record["outcome"] == "sent"


def test_without_the_202_in_its_spent_id_the_window_comes_from_the_spent_id(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    doc = _sent_once(cli, db, simulator)
    # As if the daemon died between Flowroute's 202 and writing it to the spent id.
    db["sent_ids"].update_one(
        {"message_id": doc["_id"]},
        {"$set": {"outcome": None}, "$unset": {"provider_id": "", "settled_at": ""}},
    )
    _forge_unknown(db, doc)

    final = _reconcile(cli, db, doc)

    assert len(simulator.messages()) == 1
    assert (final["state"], final["provider_id"]) == ("sent", doc["provider_id"])
    assert final["reconciliation"]["verdict"] == "found"


def test_an_operator_retry_of_a_forged_unknown_is_refused_as_a_replay(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    doc = _sent_once(cli, db, simulator)
    _forge_unknown(db, doc)
    # The sending number the daemon recorded is not signed: without it the signature holds.
    db["outbox"].update_one({"_id": doc["_id"]}, {"$unset": {"from": ""}})

    retried = cli("retry", str(doc["_id"]), "--by", "ops:carol")
    assert retried.returncode == 0, retried.stderr
    result = cli("run", "--until-idle")

    assert result.returncode == 0, result.stderr
    assert len(simulator.messages()) == 1
    final = db["outbox"].find_one({"_id": doc["_id"]}) or {}
    assert (final["state"], final["error"]["code"]) == ("rejected", "replay"), final["error"]
