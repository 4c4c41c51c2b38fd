"""The claim query with 100,000 messages waiting: what the server's explain() says it does."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.clock import SystemClock
from jobs.mongo.claim import claim_filter, claim_sort
from jobs.mongo.store import OUTBOX, OutboxStore
from tests.integration.helpers import Db
from tests.servers.mongo_server import MongoServer

WAITING = 100_000
CHUNK = 5_000


def fill(db: Db, count: int) -> datetime:
    """`count` due messages, as intake leaves them; returns a time at which all are due."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for offset in range(0, count, CHUNK):
        db[OUTBOX].insert_many(
            {
                "state": "queued",
                "kind": "message",
                "priority": i % 3,
                "due_at": start + timedelta(milliseconds=i),
                "user": "ops",
                "to": "12065550101",
                "body": "x",
            }
            for i in range(offset, min(offset + CHUNK, count))
        )
    return start + timedelta(days=1)


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


def time_one_claim(db: Db) -> float:
    """Seconds the daemon's claim of one message takes."""
    store = OutboxStore(db, SystemClock())
    started = time.perf_counter()
    claimed = store.claim(1, timedelta(minutes=5))
    elapsed = time.perf_counter() - started
    assert len(claimed) == 1
    return elapsed


@pytest.mark.slow
def test_claim_query_with_100000_waiting_uses_the_claim_index(
    db: Db, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    OutboxStore(db, SystemClock()).ensure_indexes()
    now = fill(db, WAITING)
    assert db[OUTBOX].count_documents({}) == WAITING

    # The claim is a find-and-modify, which FerretDB 2 cannot explain: explain the find with the
    # same filter and sort instead.
    report = explain_claim(db, now)
    claim_seconds = time_one_claim(db)
    with capsys.disabled():
        print(f"\nclaim with {WAITING} waiting, {mongo_server!r}: {claim_seconds * 1e3:.1f} ms")

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
