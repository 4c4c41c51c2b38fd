"""The claim's reads with 100,000 messages waiting: what the server's explain() says it does.
A claim reads the claim queue (jobs/mongo/queue.py) by ranges of `_id`; a repair reads the
outbox itself through the `claim` index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from jobs.clock import SystemClock
from jobs.doubles.clock import ManualClock
from jobs.mongo.claim import claim_filter, claim_sort
from jobs.mongo.queue import QUEUE
from jobs.mongo.store import OUTBOX, OutboxStore
from tests.integration.helpers import Db
from tests.servers.mongo_server import MongoServer

WAITING = 100_000
CHUNK = 5_000


def fill(db: Db, count: int) -> datetime:
    """`count` due messages, as intake leaves them (with their places in the claim queue);
    returns a time at which all are due."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    store = OutboxStore(db, SystemClock())
    store.ensure_indexes()
    for offset in range(0, count, CHUNK):
        docs = [
            {
                "state": "queued",
                "kind": "message",
                "priority": i % 3,
                "due_at": start + timedelta(milliseconds=i),
                # One message of bob's among a thousand of ops': his turn is past theirs.
                "user": "bob" if i % 997 == 500 else "ops",
                "to": "12065550101",
                "body": "x",
            }
            for i in range(offset, min(offset + CHUNK, count))
        ]
        db[OUTBOX].insert_many(docs)
        store.queue.offer(docs)
    return start + timedelta(days=1)


@pytest.fixture(scope="module")
def waiting(module_db: Db) -> datetime:
    """The module's database with `WAITING` messages due at the time returned."""
    return fill(module_db, WAITING)


def explain_claim(db: Db, now: datetime) -> dict[str, Any]:
    sort = dict(claim_sort())
    command = {"find": OUTBOX, "filter": claim_filter(now), "sort": sort, "limit": 1}
    return dict(db.command("explain", command))


def plan_stages(plan: Any) -> list[str]:
    """Every `stage` named anywhere in a MongoDB query plan."""
    if isinstance(plan, dict):
        found = [plan["stage"]] if isinstance(plan.get("stage"), str) else []
        return found + [s for value in plan.values() for s in plan_stages(value)]
    if isinstance(plan, list):
        return [s for item in plan for s in plan_stages(item)]
    return []


def postgres_nodes(plan: Any) -> list[dict[str, Any]]:
    """Every node of a PostgreSQL plan, as DocumentDB's explain returns it (EXPLAIN's JSON)."""
    if isinstance(plan, dict):
        found = [plan] if "Node Type" in plan else []
        return found + [n for value in plan.values() for n in postgres_nodes(value)]
    if isinstance(plan, list):
        return [n for item in plan for n in postgres_nodes(item)]
    return []


@pytest.mark.slow
def test_the_repair_s_read_of_the_outbox_with_100000_waiting_uses_the_claim_index(
    module_db: Db, waiting: datetime, mongo_server: MongoServer
) -> None:
    db, now = module_db, waiting
    # The claim is a find-and-modify, which FerretDB 2 cannot explain: explain the find with the
    # same filter and sort instead.
    report = explain_claim(db, now)

    server_info = report.get("serverInfo", {})
    if "ferretdb" in server_info:
        # FerretDB 2 returns DocumentDB's PostgreSQL plan: an index scan of `claim` whose index
        # condition is the claim's filter, and no sequential scan of the collection.
        nodes = postgres_nodes(report["queryPlanner"])
        scans = [n for n in nodes if n.get("Index Name") == "claim" and "Index Cond" in n]
        assert scans, nodes
        assert all(n["Node Type"] != "Seq Scan" for n in nodes), nodes
        return
    if "ferretdbVersion" not in server_info:
        stages = plan_stages(report["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in stages, stages
        assert "COLLSCAN" not in stages, stages
        assert "claim" in str(report["queryPlanner"]["winningPlan"])
        return
    # FerretDB 1.x answers in its own shape: no winningPlan and no IXSCAN stage, because it never
    # hands a query to an index of its backend. What it can do is push the equality on `state`
    # down to its backend (PostgreSQL), so only queued rows come back; a claim filter that lost
    # that property (an $in or $or on state) would read every message ever sent.
    assert "queryPlanner" in report
    if mongo_server.backend == "postgresql":
        assert report["filterPushdown"] is True, report
        assert "state" in str(report["queryPlanner"]), report
    else:
        # The SQLite backend pushes down nothing but a lone _id: the plan is a full scan.
        assert report["filterPushdown"] is False, report


class QueueReads(CommandListener):
    """The finds a claim makes of the claim queue, as sent, to be explained."""

    def __init__(self) -> None:
        self.finds: list[dict[str, Any]] = []

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == QUEUE:
            names = ("find", "filter", "sort", "limit")
            self.finds.append(
                {name: event.command[name] for name in names if name in event.command}
            )

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@pytest.mark.slow
def test_a_claim_with_100000_waiting_reads_the_claim_queue_in_index_order_without_a_sort(
    module_db: Db, waiting: datetime, mongo_server: MongoServer
) -> None:
    reads = QueueReads()
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongo_server.uri, tz_aware=True, event_listeners=[reads]
    )
    try:
        store = OutboxStore(client[module_db.name], ManualClock(waiting))
        store.queue.repair_due = lambda short: False  # type: ignore[method-assign]
        claimed = store.claim(10, timedelta(minutes=5))
    finally:
        client.close()

    assert len(claimed) == 10
    assert {doc["user"] for doc in claimed} == {"ops", "bob"}, "the others' turns were read"
    assert len(reads.finds) >= 2, reads.finds
    for command in reads.finds:
        report = dict(module_db.command("explain", command))
        server_info = report.get("serverInfo", {})
        if "ferretdb" in server_info:
            # DocumentDB's PostgreSQL plan: the `_id` index scanned forward under a Limit, which
            # stops it early; no Sort node, which would gather every match first.
            nodes = postgres_nodes(report["queryPlanner"])
            assert all(n["Node Type"] != "Sort" for n in nodes), nodes
            assert nodes[0]["Node Type"] == "Limit", nodes
            scans = [n for n in nodes if n["Node Type"] == "Index Scan"]
            assert [n["Index Name"] for n in scans] == ["_id_"], nodes
            assert scans[0]["Scan Direction"] == "Forward", nodes
        else:
            stages = plan_stages(report["queryPlanner"]["winningPlan"])
            assert "SORT" not in stages, stages
            assert "COLLSCAN" not in stages, stages
