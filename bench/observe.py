"""Benchmark: what watching costs on a 20,000-recipient campaign (a scrape, a --watch refresh,
a dashboard page, a CSV export).

Run `python bench/observe.py [--recipients N]`. It uses MONGODB_URI when set, otherwise the server
the test suite starts. It prints the median of five runs of each; it asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs import health
from jobs.mongo import reports
from jobs.rules.quiet_hours import Window
from scheduler.surfaces import dashboard_page, watch
from tests.servers.mongo_server import launch

CAMPAIGN = "6b0000000000000000000001"


def seed(db: Any, recipients: int, now: datetime) -> None:
    """One broadcast half sent: a realistic mix of states, the rest waiting in the outbox."""
    db.message_status.insert_one(
        {"_id": CAMPAIGN, "kind": "broadcast", "state": "expanded", "user": "alerts",
         "created_at": now - timedelta(minutes=30)}
    )  # fmt: skip
    status, outbox = [], []
    for i in range(recipients):
        number = f"1{206 + i % 700:03d}555{i % 10000:04d}"
        mid = f"{CAMPAIGN}:{number}:{i}"
        doc: dict[str, Any] = {"_id": mid, "kind": "message", "campaign": CAMPAIGN,
                               "to": number, "from": "12065550100", "created_at": now}  # fmt: skip
        if i < recipients // 2:
            doc.update(state="sent", sent_at=now - timedelta(seconds=(recipients // 2 - i) / 5))
        elif i % 50 == 0:
            doc.update(state="rejected", error={"code": "not_verified"})
        else:
            doc.update(state="queued")
            outbox.append(
                {"_id": mid, "state": "queued", "campaign": CAMPAIGN, "to": number, "due_at": now}
            )
        status.append(doc)
    db.message_status.insert_many(status)
    db.outbox.insert_many(outbox)
    db.message_status.create_index([("campaign", 1), ("state", 1)])
    db.outbox.create_index([("state", 1), ("priority", -1), ("due_at", 1)])


def timed(label: str, run: Callable[[], object]) -> None:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(f"{label:<42}{1000 * statistics.median(times):9.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sms-outbox-bench-") as workdir:
        uri = os.environ.get("MONGODB_URI")
        server = None if uri else launch(Path(workdir))
        uri = uri or server.uri  # type: ignore[union-attr]
        client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True)
        db = client[f"bench_observe_{int(time.time())}"]
        try:
            now = datetime.now(UTC)
            seed(db, args.recipients, now)
            print(f"{args.recipients} recipients, half sent, on {uri.split('@')[-1]}")
            timed("metrics: messages by state and reason", lambda: reports.states_and_reasons(db))
            timed("metrics: queue depth and oldest due", lambda: reports.queue(db, now))
            timed(
                "status --campaign (one --watch refresh)",
                lambda: watch.summary(reports.campaign(db, CAMPAIGN, now), now, 5, Window()),
            )
            timed(
                "dashboard page",
                lambda: dashboard_page.render(db, now, health.AlwaysActive(), 10, 5),
            )
            timed(
                "status --campaign --csv",
                lambda: watch.write_csv(reports.recipients(db, CAMPAIGN), io.StringIO()),
            )
        finally:
            client.drop_database(db.name)
            client.close()
            if server is not None:
                server.close()


if __name__ == "__main__":
    main()
