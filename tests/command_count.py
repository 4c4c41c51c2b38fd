"""Counting the database commands the daemon sends per message, with pymongo's command
monitoring; shared by the command-count tests and the benchmark.

What is counted: every command the daemon's own MongoClient sends while one dispatcher, wired as
the daemon wires it (fleet pacing at Flowroute's 5 SMS/s), sends N messages that were already
admitted, from the first cycle after admission until the last message is recorded sent: the
claims, the in-flight marks, the spent-id inserts, the finishes, the status copies, the
directory reads, the fleet pacer's block reservations, and each cycle's share of its scans
(lease recovery and resync every few seconds, new documents every cycle) and of the synced
bookkeeping. Admission (validating the producers' documents and their first status copy) is
counted apart, and so is the daemon's start-up (`start_up`: indexes, the pacer's first reading
of the server clock, repeated every five minutes). Seeding and the test's own reads use another
client.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient, monitoring
from pymongo.database import Database

from jobs.mongo.fleet_pacing import FleetPacer
from jobs.simulator.server import FlowrouteSimulator
from scheduler.settings import Settings
from scheduler.wiring import build_dispatcher, start_up
from tests.integration.helpers import numbers, seed

Db = Database[dict[str, Any]]
ACCESS, SECRET = "count-access", "count-secret"
# Commands per sent message on an atomic server (send_guard "none"), everything the daemon does
# included: the spent-id insert (jobs/mongo/spent.py) and the fleet pacer's slot commands.
BUDGET = 7
RATE = 5  # Flowroute's limit per account, enforced by the simulator too


class CommandCounter(monitoring.CommandListener):
    """Records the name, collection and target ids of each command started on its client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.commands: list[tuple[str, str, list[Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        target = event.command.get(name)
        collection = target if isinstance(target, str) else ""
        ids = [s.get("q", {}).get("_id") for s in event.command.get("updates", [])]
        with self._lock:
            self.commands.append((name, collection, ids))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Only starts are counted."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Only starts are counted."""

    def take(self) -> list[tuple[str, str, list[Any]]]:
        """The commands recorded so far; starts afresh."""
        with self._lock:
            taken, self.commands = self.commands, []
        return taken


@dataclass
class Measurement:
    """What sending `sent` messages cost the daemon, in database commands."""

    sent: int
    accepted: int = 0  # requests Flowroute accepted
    batches: int = 0  # cycles that claimed something
    admission: Counter[str] = field(default_factory=Counter)
    sending: Counter[str] = field(default_factory=Counter)
    status_writes: Counter[Any] = field(default_factory=Counter)  # update statements, by _id

    @property
    def per_message(self) -> float:
        """Commands per sent message, admission apart."""
        return sum(self.sending.values()) / self.sent

    @property
    def admission_per_message(self) -> float:
        return sum(self.admission.values()) / self.sent

    def breakdown(self) -> str:
        """The sending commands by name and collection, most frequent first."""
        return ", ".join(f"{key} {n}" for key, n in self.sending.most_common())


def _tally(commands: list[tuple[str, str, list[Any]]], into: Measurement, bucket: str) -> None:
    counts: Counter[str] = getattr(into, bucket)
    for name, collection, ids in commands:
        counts[f"{name} {collection}".strip()] += 1
        if name == "update" and collection == "message_status":
            into.status_writes.update(ids)


def measure(uri: str, db: Db, keys: Path, *, messages: int, batch_size: int) -> Measurement:
    """Seed `messages` signed messages to verified recipients, admit them, then send them through
    the local Flowroute, limited to its real 5 SMS/s, with one dispatcher wired as the daemon
    wires it (`build_dispatcher`: fleet pacing at 5/s, send guard `none`, quiet hours off so the
    figure does not depend on the time of day) whose client is monitored."""
    seed(db, numbers(messages), keys)
    counter = CommandCounter()
    client: MongoClient[dict[str, Any]] = MongoClient(
        uri, tz_aware=True, event_listeners=[counter], serverSelectionTimeoutMS=10_000
    )
    simulator = FlowrouteSimulator(ACCESS, SECRET, rate_per_second=RATE).start()
    try:
        watched = client[db.name]
        dispatcher = build_dispatcher(
            _settings(uri, db.name, simulator.url, keys, batch_size), watched
        )
        assert isinstance(getattr(dispatcher.pacer, "pacer", None), FleetPacer)
        result = Measurement(sent=0)
        start_up(dispatcher)  # once per daemon, not per message
        counter.take()
        dispatcher.admit()
        dispatcher.store.mark_synced()
        _tally(counter.take(), result, "admission")
        deadline = time.monotonic() + 120
        while _sent(db) < messages:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {_sent(db)} of {messages} sent after 120 s")
            if dispatcher.run_once().claimed:
                result.batches += 1
            else:
                # Nothing left to claim: the daemon would wait a poll interval while the sends
                # in flight finish, rather than claim again at once.
                dispatcher.finish()
        _tally(counter.take(), result, "sending")
        result.sent = _sent(db)
        result.accepted = len(simulator.messages())
        return result
    finally:
        simulator.stop()
        client.close()


def _settings(uri: str, database: str, url: str, keys: Path, batch_size: int) -> Settings:
    return Settings.model_validate(
        {
            "mongodb": {"uri": uri, "database": database, "send_guard": "none"},
            "flowroute": {
                "base_url": url, "access_key": ACCESS, "secret_key": SECRET,
                "rate_per_second": RATE,
            },
            "dispatch": {"batch_size": batch_size, "lease_seconds": 600, "pacing": "fleet"},
            "quiet_hours": {"enabled": False},
            "security": {"keys_dir": str(keys)},
        }
    )  # fmt: skip


def _sent(db: Db) -> int:
    return db["message_status"].count_documents({"state": "sent"})
