"""Benchmark: sends per second through the local Flowroute, daemons sharing a server, claim cost.

Run `python bench/benchmark.py` (add `--quick` for smaller numbers). It uses MONGODB_URI when set,
otherwise the server the test suite starts (mongod on PATH, else FerretDB). It prints figures; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.database import Database

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs.clock import SystemClock  # noqa: E402
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher  # noqa: E402
from jobs.doubles.simulator import FlowrouteSimulator  # noqa: E402
from jobs.flowroute import FlowrouteClient  # noqa: E402
from jobs.mongo.directory import Directory  # noqa: E402
from jobs.mongo.store import OutboxStore  # noqa: E402
from jobs.pacing import SlidingWindowPacer  # noqa: E402
from scheduler import logs  # noqa: E402
from tests.command_count import BUDGET, measure  # noqa: E402
from tests.integration.helpers import numbers, seed  # noqa: E402
from tests.servers.mongo_server import MongoServer, launch  # noqa: E402

Db = Database[dict[str, Any]]
KEY, SECRET = "bench-access", "bench-secret"


@contextmanager
def server() -> Iterator[MongoServer]:
    with tempfile.TemporaryDirectory(prefix="sms-outbox-bench-") as workdir:
        running = launch(Path(workdir))
        try:
            yield running
        finally:
            running.close()


@contextmanager
def database(uri: str) -> Iterator[Db]:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def send_rate(uri: str, keys: Path, count: int, rate: int | None) -> None:
    """One in-process dispatcher sends `count` messages; the simulator enforces `rate` too."""
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=rate) as sim:
        seed(db, numbers(count), keys)
        clock = SystemClock()
        client = FlowrouteClient(sim.url, SecretStr(KEY), SecretStr(SECRET), 10.0)
        dispatcher = Dispatcher(
            OutboxStore(db, clock),
            Directory(db),
            client,
            SlidingWindowPacer(rate, clock),
            clock,
            DispatchConfig(batch_size=25, lease_seconds=600),
        )
        started = time.perf_counter()
        while not dispatcher.run_once().idle:
            pass
        elapsed = time.perf_counter() - started
        sent = len(sim.messages())
        refused = sim.attempts() - sent
        label = f"{rate}/s limit" if rate else "limit lifted"
        print(
            f"  {label:<14} {sent:>6} sent in {elapsed:7.2f} s = {sent / elapsed:8.1f} msg/s,"
            f" {refused} refused (429), peak RSS {peak_rss_mib():.0f} MiB"
        )


def daemons(uri: str, keys: Path, count: int, workers: int) -> None:
    """`workers` daemon processes drain `count` messages; claims/s and messages/s."""
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=None) as sim:
        seed(db, numbers(count), keys)
        env = dict(os.environ)
        env.update(
            SMS_OUTBOX_MONGODB__URI=uri,
            SMS_OUTBOX_MONGODB__DATABASE=db.name,
            SMS_OUTBOX_FLOWROUTE__BASE_URL=sim.url,
            SMS_OUTBOX_FLOWROUTE__ACCESS_KEY=KEY,
            SMS_OUTBOX_FLOWROUTE__SECRET_KEY=SECRET,
            SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND="0",
            SMS_OUTBOX_DISPATCH__BATCH_SIZE="25",
            SMS_OUTBOX_DISPATCH__POLL_SECONDS="0.1",
            SMS_OUTBOX_LOGGING__LEVEL="warning",
            SMS_OUTBOX_SECURITY__KEYS_DIR=str(keys),
            SMS_OUTBOX_QUIET_HOURS__ENABLED="false",
        )
        argv = [sys.executable, "-m", "scheduler", "--until-idle"]
        started = time.perf_counter()
        procs = [subprocess.Popen(argv, env=env, cwd=ROOT) for _ in range(workers)]
        for proc in procs:
            proc.wait()
        elapsed = time.perf_counter() - started
        sent = len(sim.messages())
        doubled = sent - len({m.to for m in sim.messages()})
        print(
            f"  {workers} daemon(s)    {sent:>6} sent in {elapsed:7.2f} s ="
            f" {sent / elapsed:8.1f} msg/s (doubled: {doubled})"
        )
        claims = claim_rate(uri, count, workers)
        print(f"  {'':14} claims alone: {claims:8.1f} claims/s")


def _claim_worker(uri: str, name: str, out: Any) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True)
    store = OutboxStore(client[name], SystemClock())
    claimed = 0
    while batch := store.claim(25, timedelta(minutes=5)):
        claimed += len(batch)
    out.put(claimed)


def claim_rate(uri: str, count: int, workers: int) -> float:
    """`workers` processes do nothing but claim until `count` queued messages are gone."""
    with database(uri) as db:
        OutboxStore(db, SystemClock()).ensure_indexes()
        now = datetime.now(UTC)
        queued = [
            {"state": "queued", "priority": 0, "due_at": now, "rev": 1, "to": n, "user": "ops"}
            for n in numbers(count)
        ]
        db["outbox"].insert_many(queued)
        results: Any = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(target=_claim_worker, args=(uri, db.name, results))
            for _ in range(workers)
        ]
        started = time.perf_counter()
        for proc in procs:
            proc.start()
        total = sum(results.get() for _ in procs)
        for proc in procs:
            proc.join()
        return total / (time.perf_counter() - started)


def claim_cost(uri: str, waiting: int, samples: int) -> None:
    """Milliseconds for one claim with `waiting` messages due."""
    with database(uri) as db:
        store = OutboxStore(db, SystemClock())
        store.ensure_indexes()
        start = datetime.now(UTC) - timedelta(days=1)
        for offset in range(0, waiting, 5000):
            db["outbox"].insert_many(
                {"state": "queued", "priority": 0, "due_at": start + timedelta(milliseconds=i),
                 "rev": 1}
                for i in range(offset, min(offset + 5000, waiting))
            )  # fmt: skip
        timings = []
        for _ in range(samples):
            began = time.perf_counter()
            store.claim(1, timedelta(minutes=5))
            timings.append((time.perf_counter() - began) * 1000)
        print(
            f"  {waiting:>7} waiting: median {statistics.median(timings):8.1f} ms per claim"
            f" (min {min(timings):.1f}, max {max(timings):.1f}, {samples} claims)"
        )


def command_cost(uri: str, keys: Path, count: int) -> None:
    """Database commands per sent message, by command, one dispatcher (send guard `none`)."""
    with database(uri) as db:
        measured = measure(uri, db, keys, messages=count, batch_size=10)
    print(
        f"  {measured.per_message:.2f} commands per sent message (budget {BUDGET}),"
        f" {count} messages in batches of 10; admission apart:"
        f" {measured.admission_per_message:.2f} per message"
    )
    print(f"  by command: {measured.breakdown()}")
    writes = ", ".join(map(str, sorted(set(measured.status_writes.values()))))
    print(f"  status writes per sent message: {writes} (queued, sending, sent)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    logs.configure("warning", "console")
    paced = 25 if args.quick else 50
    lifted = 500 if args.quick else 2000
    waiting = (2_000, 10_000) if args.quick else (10_000, 100_000)

    with server() as running, tempfile.TemporaryDirectory(prefix="sms-outbox-keys-") as keys:
        uri = running.uri
        print(f"server: {running.kind} {getattr(running, 'backend', '')}".rstrip())
        print("\nsends per second, one daemon, local Flowroute:")
        send_rate(uri, Path(keys), paced, 5)
        send_rate(uri, Path(keys), lifted, None)
        print("\ndaemons sharing the server (limit lifted):")
        for workers in (1, 2, 4):
            daemons(uri, Path(keys), lifted, workers)
        print("\ndatabase commands per sent message (pymongo command monitoring):")
        command_cost(uri, Path(keys) / "commands", 20 if args.quick else 100)
        print("\nclaim cost (find_one_and_update on the claim index):")
        for count in waiting:
            claim_cost(uri, count, samples=20)


if __name__ == "__main__":
    main()
