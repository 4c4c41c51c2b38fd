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

from bson import ObjectId
from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.database import Database

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs.clock import SystemClock  # noqa: E402
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher  # noqa: E402
from jobs.flowroute import FlowrouteClient  # noqa: E402
from jobs.keys import KeyRing  # noqa: E402
from jobs.mongo import queue as claim_queue  # noqa: E402
from jobs.mongo.directory import Directory  # noqa: E402
from jobs.mongo.fleet_pacing import FleetPacer  # noqa: E402
from jobs.mongo.store import OutboxStore  # noqa: E402
from jobs.pacing import SlidingWindowPacer  # noqa: E402
from jobs.rules import signing  # noqa: E402
from jobs.rules.slots import SlotPlan  # noqa: E402
from jobs.simulator.server import FlowrouteSimulator  # noqa: E402
from scheduler import logs  # noqa: E402
from tests.command_count import BUDGET, measure  # noqa: E402
from tests.integration.helpers import (  # noqa: E402
    SENDER,
    all_terminal,
    enqueue_signed,
    numbers,
    seed,
)
from tests.servers.mongo_server import MongoServer, launch  # noqa: E402

Db = Database[dict[str, Any]]
KEY, SECRET = "bench-access", "bench-secret"
LIMIT = 5
AGENDA_DIR = ROOT / "bench" / "agenda"
LATENCY = 0.02  # seconds the local Flowroute takes to answer in the comparison with Agenda
# Seconds a daemon is given to start (indexes, the pacer's clock) before work is inserted.
STARTUP_SECONDS = 3.0


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


def daemons(
    uri: str, keys: Path, count: int, workers: int, concurrency: int = 1, latency: float = LATENCY
) -> float:
    """`workers` long-running daemon processes with `concurrency` sends in flight each drain
    `count` messages, pacing off, Flowroute answering in `latency`; messages per second. The
    messages are inserted once the daemons are up: their start-up is not the draining."""
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=None) as sim:
        seed(db, numbers(count), keys, messages=False)
        sim.delay_next(latency, count=10 * count)
        env = daemon_env(uri, db.name, sim.url, keys, DISPATCH__CONCURRENCY=str(concurrency))
        with running(env, workers):
            time.sleep(STARTUP_SECONDS)
            enqueue_signed(db, numbers(count), keys)
            drain(db, count, 900)
        sent, elapsed, rate = span(sim)
        doubled = sent - len({m.to for m in sim.messages()})
        print(
            f"  sms-outbox, {workers} daemon(s), concurrency {concurrency}: {sent:>5} sent in"
            f" {elapsed:6.2f} s = {rate:7.1f} msg/s (sent twice: {doubled})"
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


def agenda(uri: str, count: int, concurrency: int, latency: float = LATENCY) -> float | None:
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
        sim.delay_next(latency, count=10 * count)
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
    """Milliseconds per message claimed (claims of 10) with `waiting` messages due, queued as
    the daemon queues them (with their claim queue entries); then the cost of the repair that
    finds the same queue when an earlier version left it without entries."""
    with database(uri) as db:
        store = OutboxStore(db, SystemClock())
        store.ensure_indexes()
        start = datetime.now(UTC) - timedelta(days=1)
        for offset in range(0, waiting, 20_000):
            docs = [
                {"state": "queued", "priority": i % 3, "due_at": start + timedelta(milliseconds=i),
                 "rev": 1, "attempts": 0, "user": f"u{i % 7}"}
                for i in range(offset, min(offset + 20_000, waiting))
            ]  # fmt: skip
            db["outbox"].insert_many(docs, ordered=False)
            store.queue.offer(docs)
        timings = []
        for _ in range(samples):
            began = time.perf_counter()
            claimed = store.claim(10, timedelta(minutes=5))
            timings.append((time.perf_counter() - began) * 1000 / max(len(claimed), 1))
        print(
            f"  {waiting:>9,} due: median {statistics.median(timings):6.1f} ms per message claimed"
            f" (min {min(timings):.1f}, max {max(timings):.1f}; {samples} claims of 10)"
        )
        db[claim_queue.QUEUE].drop()
        began = time.perf_counter()
        left = OutboxStore(db, SystemClock()).claim(10, timedelta(minutes=5))
        seconds = time.perf_counter() - began
        print(
            f"  {'':>9}  the same queue without entries: first claim {seconds:.2f} s"
            f" (its repair reads {claim_queue.REPAIR_PAGE:,}), {len(left)} claimed"
        )


def limit_share(uri: str, keys: Path, rate: int, latency: float, seconds: float) -> None:
    """One daemon at a strict `rate` limit, Flowroute answering in `latency`: the share of the
    limit it fills (fleet pacing, `dispatch.concurrency` auto) and the refusals."""
    count = int(rate * seconds)
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=rate) as sim:
        seed(db, numbers(count), keys)
        sim.delay_next(latency, count=10 * count)
        env = daemon_env(
            uri, db.name, sim.url, keys, FLOWROUTE__RATE_PER_SECOND=str(rate),
            DISPATCH__BATCH_SIZE="10", DISPATCH__PACING="fleet",
        )  # fmt: skip
        with running(env, 1):
            drain(db, count, 60 + 3 * seconds)
        times = sim.attempt_times()
        refused = len(times) - len(sim.messages())
        share = (len(times) - 1) / (times[-1] - times[0]) / rate
        print(
            f"  {rate:>3}/s limit, {latency * 1000:4.0f} ms latency: {len(times):>5} attempts,"
            f" {share:6.1%} of the limit, {refused} refused (429)"
        )


def _child_count(db: Db, campaign: str) -> int:
    return db["outbox"].count_documents({"campaign": campaign})


def _rss_mib(pid: int) -> float:
    """A process's peak resident memory, from /proc (Linux)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def broadcast_speed(uri: str, keys: Path, recipients: int, watch: float) -> None:
    """One daemon at 5/s and a broadcast to `recipients`: seconds to the first text, the send
    rate over the first `watch` seconds, the fan-out rate and the daemon's peak RSS."""
    with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=LIMIT) as sim:
        seed(db, numbers(min(recipients, 20_000)), keys, messages=False)
        for offset in range(20_000, recipients, 20_000):
            people = numbers(min(20_000, recipients - offset), start=offset)
            db["users"].insert_many(({"phone": n, "verified": True} for n in people), ordered=False)
        # As `init` leaves a database: indexes built before the daemon starts, not by it.
        Directory(db).ensure_indexes()
        OutboxStore(db, SystemClock()).ensure_indexes()
        key = KeyRing(keys).user_key(SENDER) or ""
        doc: dict[str, Any] = {
            "_id": ObjectId(), "user": SENDER, "audience": "verified", "body": "news",
        }  # fmt: skip
        doc["signature"] = signing.sign(key, doc)
        env = daemon_env(
            uri, db.name, sim.url, keys, FLOWROUTE__RATE_PER_SECOND=str(LIMIT),
            DISPATCH__BATCH_SIZE="10", DISPATCH__PACING="fleet",
        )  # fmt: skip
        with running(env, 1) as procs:
            time.sleep(STARTUP_SECONDS)  # the daemon's start-up is not the broadcast's
            inserted = time.monotonic()
            db["outbox"].insert_one(doc)
            campaign = str(doc["_id"])
            first = None
            made: list[tuple[float, int]] = []
            while time.monotonic() - inserted < watch:
                if first is None and sim.attempt_times():
                    first = sim.attempt_times()[0] - inserted
                made.append((time.monotonic(), _child_count(db, campaign)))
                time.sleep(0.5)
            rss = _rss_mib(procs[0].pid)
        times = sim.attempt_times()
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        done = [t for t, n in made if n >= recipients]
        until = done[0] if done else made[-1][0]
        children = max(n for _, n in made)
        fanout = children / (until - inserted)
        first_text = f"{first:.2f} s" if first is not None else "none"
        print(
            f"  {recipients:,} recipients: first text after {first_text}; {len(times)} sent in"
            f" {watch:.0f} s at {rate:.2f}/s ({rate / LIMIT:.1%} of the limit); fan-out"
            f" {children:,} messages at {fanout:,.0f}/s; daemon peak RSS {rss:.0f} MiB"
        )


def import_speed(uri: str, rows: int) -> None:
    """`recipients import` of `rows` mixed spellings against a plain insert_many of as many."""
    from jobs.mongo.directory import Directory as Dir

    spellings = [
        lambda n: f"1{n}", lambda n: f"+1 ({n[:3]}) {n[3:6]}-{n[6:]}", lambda n: n,
        lambda n: f"{n[:3]}.{n[3:6]}.{n[6:]}",
    ]  # fmt: skip
    people = max(rows * 3 // 4, 1)
    lines = ["phone,verified"] + [
        f"{spellings[i % 4](str(2065550000 + i % people))},yes" for i in range(rows)
    ]
    with database(uri) as plain_db, database(uri) as import_db:
        docs = [{"phone": f"1{2065550000 + i}", "verified": True} for i in range(rows)]
        began = time.perf_counter()
        for start in range(0, rows, 25_000):  # DocumentDB's largest write batch
            plain_db["users"].insert_many(docs[start : start + 25_000])
        plain = time.perf_counter() - began
        path = Path(tempfile.mkstemp(suffix=".csv")[1])
        try:
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            began = time.perf_counter()
            with path.open(newline="", encoding="utf-8") as handle:
                summary = Dir(import_db).import_csv(
                    handle, verified=False, now=datetime.now(UTC), source=path.name
                )
            imported = time.perf_counter() - began
        finally:
            path.unlink()
    print(
        f"  {rows:,} mixed-spelling rows: import {imported:.2f} s, insert_many {plain:.2f} s ="
        f" {imported / plain:.1f}x (new {summary.new:,}, merged {summary.merged:,});"
        f" peak RSS of this process {peak_rss_mib():.0f} MiB"
    )


def invalid_flood(uri: str, keys: Path, count: int) -> None:
    """`count` documents one producer got wrong (unsigned, or to numbers nobody verified)
    inserted ahead of another user's message: seconds until that message is sent, and until
    every document is settled, one daemon with pacing off."""
    for kind in ("unsigned", "unverified"):
        with database(uri) as db, FlowrouteSimulator(KEY, SECRET, rate_per_second=None) as sim:
            seed(db, [numbers(1)[0]], keys, messages=False)
            ring = KeyRing(keys)
            ring.create_user_key("other")
            db["authorized"].insert_one({"user": "other", "source": "12065550100"})
            flood = []
            for i in range(count):
                doc = {"_id": ObjectId(), "user": SENDER, "to": f"1312555{i:04d}", "body": "x"}
                if kind == "unverified":
                    doc["signature"] = signing.sign(ring.user_key(SENDER) or "", doc)
                flood.append(doc)
            db["outbox"].insert_many(flood)
            legit = {"_id": ObjectId(), "user": "other", "to": numbers(1)[0], "body": "legit"}
            legit["signature"] = signing.sign(ring.user_key("other") or "", legit)
            db["outbox"].insert_one(legit)
            started = time.monotonic()
            with running(daemon_env(uri, db.name, sim.url, keys), 1):
                while not sim.messages() and time.monotonic() - started < 300:
                    time.sleep(0.05)
                first = time.monotonic() - started
                drain(db, count + 1, 900)
            settled = time.monotonic() - started
            print(
                f"  {count} {kind:<10} then another user's message: sent after {first:5.1f} s,"
                f" all {count + 1} settled after {settled:5.1f} s"
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


SECTIONS = (
    "limit",
    "broadcast",
    "claims",
    "import",
    "agenda",
    "fleet",
    "commands",
    "latency",
    "invalid",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--broadcast", type=int, help="recipients of the big broadcast (100000)")
    parser.add_argument("--claims", help="due messages for the claim cost (1000,100000,1000000)")
    parser.add_argument("--import-rows", type=int, help="rows of the import (50000)")
    parser.add_argument("--agenda-messages", type=int, default=1000, help="messages per run")
    parser.add_argument("--only", help=f"comma-separated sections of {', '.join(SECTIONS)}")
    args = parser.parse_args()
    logs.configure("warning", "console")
    chosen = set(args.only.split(",")) if args.only else set(SECTIONS)
    shared = 60 if args.quick else 120
    compared = args.agenda_messages
    recipients = args.broadcast or (10_000 if args.quick else 100_000)
    waiting = [int(n) for n in (args.claims or "1000,100000,1000000").split(",")]
    rows = args.import_rows or 50_000

    with server() as started, tempfile.TemporaryDirectory(prefix="sms-outbox-keys-") as keys:
        uri = started.uri
        print(f"server: {started.kind} {getattr(started, 'backend', '')}".rstrip())
        load, now = os.getloadavg()[0], datetime.now(UTC)
        print(f"machine: {os.cpu_count()} cores, load {load:.1f}; {now:%Y-%m-%d %H:%M} UTC")
        if "limit" in chosen:
            print("\none daemon against a strict limit (fleet pacing, concurrency auto):")
            for rate, delay in ((LIMIT, 0.3), (LIMIT, 0.6), (50, 0.3)):
                limit_share(uri, Path(keys), rate, delay, 20 if args.quick else 40)
        if "broadcast" in chosen:
            print("\na big broadcast, one daemon at 5/s:")
            broadcast_speed(uri, Path(keys), recipients, 30 if args.quick else 60)
        if "claims" in chosen:
            print("\nclaim cost (entries read from the claim queue, then claimed by id):")
            for count in waiting:
                claim_cost(uri, count, samples=30)
        if "import" in chosen:
            print("\nrecipients import against a plain insert_many:")
            import_speed(uri, rows)
        if "agenda" in chosen:
            print(
                f"\nbeside Agenda 6: {compared} messages, pacing off, timed by the local"
                " Flowroute from the first request to the last:"
            )
            ratios = []
            for concurrency in (1, 5):
                for delay in (0.02, 0.3):
                    print(
                        f" concurrency {concurrency}, Flowroute answering in {delay * 1000:.0f} ms:"
                    )
                    ours = daemons(uri, Path(keys), compared, 1, concurrency, delay)
                    theirs = agenda(uri, compared, concurrency, delay)
                    if theirs:
                        ratios.append(f"c{concurrency}/{delay * 1000:.0f}ms {ours / theirs:.2f}x")
            print(f"  sms-outbox / Agenda: {'; '.join(ratios) or 'Agenda did not run'}")
        if "fleet" in chosen:
            print(f"\nfleet pacing: daemon processes sharing one account, {LIMIT}/s strict window:")
            for workers in (1, 2, 4):
                fleet(uri, Path(keys), shared, workers)
            print("\nfleet pacing, database commands per message:")
            for workers in (1, 2, 4):
                pacing_commands(uri, workers, per_worker=10 if args.quick else 15)
            # Enough messages that the last batches (10 a daemon, 3 s at 300 ms) do not decide it.
            drained = 300 if args.quick else 1000
            print(f"\n5 daemons against 1, a slow unlimited Flowroute (300 ms), {drained} sent:")
            one = daemons(uri, Path(keys), drained, 1, 1, 0.3)
            five = daemons(uri, Path(keys), drained, 5, 1, 0.3)
            print(f"  5 daemons / 1: {five / one:.2f}x")
        if "commands" in chosen:
            print("\ndatabase commands per sent message (pymongo command monitoring):")
            command_cost(uri, Path(keys) / "commands", 20 if args.quick else 100)
        if "invalid" in chosen:
            print("\ndocuments a producer got wrong, ahead of another user's message:")
            invalid_flood(uri, Path(keys) / "invalid", 500 if args.quick else 2000)
        if "latency" in chosen:
            print("\nenqueue-to-send latency, one idle daemon, fleet pacing at 5/s:")
            latency(uri, Path(keys), 10 if args.quick else 20, "0.5")


if __name__ == "__main__":
    main()
