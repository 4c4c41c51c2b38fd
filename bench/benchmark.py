"""Benchmark: fleet pacing, sends per second beside Agenda, claim cost, latency and memory.

Run `python bench/benchmark.py` (add `--quick` for smaller numbers). It uses MONGODB_URI when set,
otherwise the server the test suite starts (mongod on PATH, else FerretDB). It prints figures; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
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
from jobs.keys import KeyRing  # noqa: E402
from jobs.mongo.directory import Directory  # noqa: E402
from jobs.mongo.fleet_pacing import FleetPacer  # noqa: E402
from jobs.mongo.store import OutboxStore  # noqa: E402
from jobs.pacing import SlidingWindowPacer  # noqa: E402
from jobs.rules import signing  # noqa: E402
from jobs.rules.slots import SlotPlan  # noqa: E402
from scheduler import logs  # noqa: E402
from tests.command_count import BUDGET, measure  # noqa: E402
from tests.integration.helpers import SENDER, all_terminal, numbers, seed  # noqa: E402
from tests.servers.mongo_server import MongoServer, launch  # noqa: E402

Db = Database[dict[str, Any]]
KEY, SECRET = "bench-access", "bench-secret"
LIMIT = 5
AGENDA_DIR = ROOT / "bench" / "agenda"
LATENCY = 0.02  # seconds the local Flowroute takes to answer in the comparison with Agenda


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


def daemon_env(uri: str, database: str, flowroute: str, keys: Path, **extra: str) -> dict[str, str]:
    """The environment of a daemon process in these runs; `extra` overrides settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMS_OUTBOX_")}
    env.update(
        SMS_OUTBOX_MONGODB__URI=uri,
        SMS_OUTBOX_MONGODB__DATABASE=database,
        SMS_OUTBOX_FLOWROUTE__BASE_URL=flowroute,
        SMS_OUTBOX_FLOWROUTE__ACCESS_KEY=KEY,
        SMS_OUTBOX_FLOWROUTE__SECRET_KEY=SECRET,
        SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND="0",
        SMS_OUTBOX_DISPATCH__BATCH_SIZE="25",
        SMS_OUTBOX_DISPATCH__POLL_SECONDS="0.1",
        SMS_OUTBOX_LOGGING__LEVEL="error",
        SMS_OUTBOX_SECURITY__KEYS_DIR=str(keys),
        SMS_OUTBOX_QUIET_HOURS__ENABLED="false",
    )
    env.update({f"SMS_OUTBOX_{k}": v for k, v in extra.items()})
    return env


@contextmanager
def running(env: dict[str, str], workers: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`workers` daemon processes (`sms-outbox run`), stopped with SIGTERM whatever happens."""
    argv = [sys.executable, "-m", "scheduler"]
    procs = [subprocess.Popen(argv, env=env, cwd=ROOT) for _ in range(workers)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def drain(db: Db, count: int, timeout: float) -> None:
    """Wait until `count` messages are settled; a slow poll keeps the server free for the
    daemons (the rates are timed by the local Flowroute, not by this loop)."""
    deadline = time.monotonic() + timeout
    while not all_terminal(db, count) and time.monotonic() < deadline:
        time.sleep(0.5)


def daemons(uri: str, keys: Path, count: int, workers: int) -> float:
    """`workers` daemon processes drain `count` messages, pacing off; messages per second."""
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=None) as sim:
        seed(db, numbers(count), keys)
        sim.delay_next(LATENCY, count=10 * count)
        env = daemon_env(uri, db.name, sim.url, keys)
        with running(env, workers):
            drain(db, count, 600)
        sent, elapsed, rate = span(sim)
        doubled = sent - len({m.to for m in sim.messages()})
        print(
            f"  sms-outbox, {workers} daemon processes: {sent:>5} sent in {elapsed:6.2f} s ="
            f" {rate:7.1f} msg/s (sent twice: {doubled})"
        )
        return rate


def span(sim: FlowrouteSimulator) -> tuple[int, float, float]:
    """Messages accepted, seconds from the first request to the last, and their rate."""
    times = sim.attempt_times()
    sent = len(sim.messages())
    elapsed = times[-1] - times[0] if len(times) > 1 else float("nan")
    return sent, elapsed, (len(times) - 1) / elapsed


def fleet(uri: str, keys: Path, count: int, workers: int) -> None:
    """`workers` daemon processes share one account at the real limit, strict window."""
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=LIMIT) as sim:
        seed(db, numbers(count), keys)
        batch = 10
        env = daemon_env(
            uri,
            db.name,
            sim.url,
            keys,
            FLOWROUTE__RATE_PER_SECOND=str(LIMIT),
            DISPATCH__BATCH_SIZE=str(batch),
            DISPATCH__PACING="fleet",
        )
        with running(env, workers):
            drain(db, count, 300)
        times = sim.attempt_times()
        refused = len(times) - len(sim.messages())
        doubled = len(sim.messages()) - len({m.to for m in sim.messages()})
        whole = (len(times) - 1) / (times[-1] - times[0]) / LIMIT
        # The last batches are where daemons run out of work: leave them out of the steady rate.
        steady_part = times[: max(len(times) - workers * batch, LIMIT + 1)]
        steady = (len(steady_part) - 1) / (steady_part[-1] - steady_part[0]) / LIMIT
        print(
            f"  {workers} daemon(s): {len(times):>4} attempts, {refused} refused (429),"
            f" {doubled} doubled; {steady:6.1%} of the limit while all had work,"
            f" {whole:6.1%} over the whole run"
        )


def pacing_commands(uri: str, workers: int, per_worker: int) -> None:
    """Database commands the fleet pacer spends per slot, `workers` pacers in threads."""
    with database(uri) as db:
        clock = SystemClock()
        plan = SlotPlan(LIMIT)
        pacers = [FleetPacer(db, "bench", plan, clock) for _ in range(workers)]
        for pacer in pacers:
            pacer.ensure_indexes()
        barrier = threading.Barrier(workers)
        counted: list[int] = []

        def work(pacer: FleetPacer) -> None:
            pacer.acquire()  # the start-up commands (indexes, clock) are not per message
            before = pacer.commands
            barrier.wait()
            for _ in range(per_worker):
                pacer.acquire()
            counted.append(pacer.commands - before)

        threads = [threading.Thread(target=work, args=(p,)) for p in pacers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = workers * per_worker
        print(
            f"  {workers} pacer(s): {sum(counted)} commands for {total} slots ="
            f" {sum(counted) / total:.2f} per message"
        )


def agenda(uri: str, count: int, concurrency: int) -> float | None:
    """The same workload through Agenda 6 with `concurrency` jobs at a time; jobs per second."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        print("  Agenda skipped: node and npm are needed (https://nodejs.org)")
        return None
    if not (AGENDA_DIR / "node_modules" / "agenda").is_dir():
        install = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=AGENDA_DIR, capture_output=True, text=True
        )
        if install.returncode != 0:
            print(f"  Agenda skipped: npm ci failed: {install.stderr.strip()[-300:]}")
            return None
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=None) as sim:
        sim.delay_next(LATENCY, count=10 * count)
        argv = [node, "run.mjs", uri, db.name, sim.url, KEY, SECRET, str(count), str(concurrency)]
        try:
            done = subprocess.run(argv, cwd=AGENDA_DIR, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            print("  Agenda did not finish in 15 minutes")
            return None
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            print(f"  Agenda could not run here: {done.stderr.strip()[-400:]}")
            return None
        result = json.loads(lines[-1])
        sent, elapsed, rate = span(sim)
        doubled = sent - len({m.to for m in sim.messages()})
        print(
            f"  Agenda 6, concurrency {concurrency}, one process: {sent:>5} sent in"
            f" {elapsed:6.2f} s ="
            f" {rate:7.1f} msg/s (sent twice: {doubled}; jobs failed: {result['failed']};"
            f" {result['seconds']:.2f} s from start())"
        )
        return rate


def latency(uri: str, keys: Path, samples: int, poll: str) -> None:
    """Enqueue-to-send latency of one idle daemon polling every `poll` seconds."""
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=LIMIT) as sim:
        recipients = numbers(samples)
        seed(db, recipients, keys, messages=False)
        env = daemon_env(
            uri,
            db.name,
            sim.url,
            keys,
            FLOWROUTE__RATE_PER_SECOND=str(LIMIT),
            DISPATCH__POLL_SECONDS=poll,
            DISPATCH__BATCH_SIZE="10",
        )
        key = KeyRing(keys).user_key(SENDER) or ""
        waits: list[float] = []
        with running(env, 1):
            time.sleep(2.0)  # start-up is not latency
            for i, to in enumerate(recipients):
                doc = {"user": SENDER, "to": to, "body": f"latency {i}"}
                doc["signature"] = signing.sign(key, doc)
                enqueued = datetime.now(UTC)
                db["outbox"].insert_one(doc)
                deadline = time.monotonic() + 30
                while len(sim.messages()) <= i and time.monotonic() < deadline:
                    time.sleep(0.005)
                if len(sim.messages()) > i:
                    waits.append((sim.messages()[i].timestamp - enqueued).total_seconds())
                time.sleep(random.uniform(0.0, 0.5))
        waits.sort()
        p95 = waits[min(len(waits) - 1, int(0.95 * len(waits)))]
        print(
            f"  poll_seconds = {poll}: {len(waits)} messages one at a time:"
            f" p50 {statistics.median(waits):.2f} s,"
            f" p95 {p95:.2f} s, max {waits[-1]:.2f} s"
        )


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
    lifted = 200 if args.quick else 300
    shared = 60 if args.quick else 120
    compared = 100 if args.quick else 300
    concurrency = 4
    waiting = (2_000, 10_000) if args.quick else (10_000, 100_000)

    with server() as started, tempfile.TemporaryDirectory(prefix="sms-outbox-keys-") as keys:
        uri = started.uri
        print(f"server: {started.kind} {getattr(started, 'backend', '')}".rstrip())
        print(f"\nfleet pacing: daemon processes sharing one account, {LIMIT}/s strict window:")
        for workers in (1, 2, 4):
            fleet(uri, Path(keys), shared, workers)
        print("\nfleet pacing, database commands per message:")
        for workers in (1, 2, 4):
            pacing_commands(uri, workers, per_worker=10 if args.quick else 15)
        print("\nsends per second, one daemon in this process, local Flowroute:")
        send_rate(uri, Path(keys), paced, LIMIT)
        send_rate(uri, Path(keys), lifted, None)
        print(
            f"\nthroughput beside Agenda: {compared} messages, pacing off, Flowroute answering"
            f" in {LATENCY * 1000:.0f} ms, {concurrency} sends at a time, timed by the local"
            " Flowroute from the first request to the last:"
        )
        ours = daemons(uri, Path(keys), compared, concurrency)
        daemon_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        theirs = agenda(uri, compared, concurrency)
        if theirs:
            print(f"  sms-outbox / Agenda: {ours / theirs:.1f}x")
        print("\ndaemons sharing the server (limit lifted, no latency added):")
        for workers in (1, 2, 4):
            claims = claim_rate(uri, lifted, workers)
            print(f"  {workers} process(es) doing nothing but claim: {claims:8.1f} claims/s")
        print("\ndatabase commands per sent message, pacing apart (pymongo command monitoring):")
        command_cost(uri, Path(keys) / "commands", 20 if args.quick else 100)
        print("\nclaim cost (find_one_and_update on the claim index):")
        for count in waiting:
            # Without a usable index each claim reads every message: fewer samples when many.
            claim_cost(uri, count, samples=20 if count <= 10_000 else 5)
        print("\nenqueue-to-send latency, one idle daemon, fleet pacing at 5/s:")
        for poll in ("1.0", "0.5"):
            latency(uri, Path(keys), 10 if args.quick else 20, poll)
        print(f"\npeak memory (RSS) of a daemon process: {daemon_rss:.0f} MiB")


if __name__ == "__main__":
    main()
