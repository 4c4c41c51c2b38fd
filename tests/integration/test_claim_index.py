"""The claim query with 100,000 messages waiting: what the server's explain() says it does."""

from __future__ import annotations

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


@pytest.mark.slow
def test_claim_query_with_100000_waiting_uses_the_claim_index(
    db: Db, mongo_server: MongoServer
) -> None:
    OutboxStore(db, SystemClock()).ensure_indexes()
    now = fill(db, WAITING)
    assert db[OUTBOX].count_documents({}) == WAITING

    report = explain_claim(db, now)

    if "ferretdbVersion" not in report.get("serverInfo", {}):
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
