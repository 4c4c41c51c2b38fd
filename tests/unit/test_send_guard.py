"""The send guard is chosen at start-up from the setting and what the server says it is."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.mongo.directory import Directory
from jobs.mongo.guard import build, choose, identify
from jobs.mongo.store import Doc, OutboxStore
from jobs.mongo.tickets import RETENTION, TICKETS, SendTickets
from jobs.ports import NoGuard, Outcome
from tests.unit.fakes import LEASE, MAX_ATTEMPTS, CountingPacer, FakeProvider
from tests.unit.helpers import outbox, status, submit

MONGODB_7: dict[str, Any] = {
    "version": "7.0.14",
    "gitVersion": "ce59cfc6a3c5e5c067dca0d30697edd68d4f5188",
    "modules": [],
    "allocator": "tcmalloc",
    "javascriptEngine": "mozjs",
    "sysInfo": "deprecated",
    "versionArray": [7, 0, 14, 0],
    "bits": 64,
    "debug": False,
    "maxBsonObjectSize": 16777216,
    "storageEngines": ["devnull", "wiredTiger"],
    "ok": 1.0,
}
# As FerretDB 1.24.2 on PostgreSQL answers (build environment left out).
FERRETDB_1: dict[str, Any] = {
    "version": "7.0.42",
    "gitVersion": "unknown",
    "modules": [],
    "sysInfo": "deprecated",
    "versionArray": [7, 0, 42, 0],
    "bits": 64,
    "debug": False,
    "maxBsonObjectSize": 16777216,
    "ferretdbVersion": "v1.24.2",
    "ferretdbFeatures": {"aggregationStages": ["$match", "$sort"]},
    "ok": 1.0,
}
# FerretDB 2.x reports its own version in a `ferretdb` document.
FERRETDB_2: dict[str, Any] = {
    "version": "7.0.77",
    "gitVersion": "4f1ea2b4e7fd4ad1b9c0b2f1fe0b1b4ea0c0ffee",
    "modules": [],
    "sysInfo": "deprecated",
    "versionArray": [7, 0, 77, 0],
    "bits": 64,
    "debug": False,
    "maxBsonObjectSize": 16777216,
    "ferretdb": {"version": "v2.5.0", "package": "deb"},
    "ok": 1.0,
}
# A compatible server that looks like neither.
LOOKALIKE: dict[str, Any] = {"version": "5.0.0", "versionArray": [5, 0, 0, 0], "ok": 1.0}


@pytest.mark.parametrize(
    ("build_info", "guard", "server"),
    [
        (MONGODB_7, "none", "MongoDB 7.0.14"),
        (FERRETDB_2, "none", "FerretDB v2.5.0"),
        (FERRETDB_1, "tickets", "FerretDB v1.24.2"),
        (LOOKALIKE, "tickets", "unknown (reports version 5.0.0)"),
        (None, "tickets", "unknown (no buildInfo)"),
    ],
)
def test_auto_skips_tickets_only_on_a_server_known_to_be_atomic(
    build_info: dict[str, Any] | None, guard: str, server: str
) -> None:
    choice = choose("auto", build_info)
    assert (choice.guard, choice.server) == (guard, server)


def test_a_ferretdb_whose_version_cannot_be_read_keeps_the_tickets() -> None:
    assert identify({**FERRETDB_2, "ferretdb": {"version": "unknown"}}) == (
        "FerretDB unknown",
        False,
    )
    assert choose("auto", {**FERRETDB_1, "ferretdbVersion": None}).guard == "tickets"


def test_a_mongodb_lookalike_without_storage_engines_keeps_the_tickets() -> None:
    lookalike = {k: v for k, v in MONGODB_7.items() if k != "storageEngines"}
    assert choose("auto", lookalike).guard == "tickets"


@pytest.mark.parametrize("setting", ["tickets", "none"])
@pytest.mark.parametrize("build_info", [MONGODB_7, FERRETDB_1, None])
def test_an_explicit_setting_wins_over_what_the_server_reports(
    setting: Any, build_info: dict[str, Any] | None
) -> None:
    assert choose(setting, build_info).guard == setting


def test_auto_on_a_database_that_cannot_say_what_it_is_uses_tickets(
    db: Database[Doc], clock: ManualClock
) -> None:
    assert isinstance(build(db, clock, "auto"), SendTickets)
    assert isinstance(OutboxStore(db, clock, "auto").guard, SendTickets)
    assert isinstance(OutboxStore(db, clock, "none").guard, NoGuard)


def test_without_a_guard_every_claim_may_send_and_recovery_reads_the_in_flight_mark() -> None:
    guard = NoGuard()
    doc = {"_id": "m", "rev": 2, "claim_token": "t"}

    assert guard.take(doc) is not None
    assert guard.take({**doc, "claim_token": "another"}) is not None
    guard.settle("m:2", Outcome.SENT, "mdr2-1")
    assert guard.verdict({**doc, "in_flight": True}).in_doubt
    assert not guard.verdict(doc).in_doubt
    assert guard.verdict(doc).provider_id is None


def test_tickets_expire_after_a_week(db: Database[Doc], clock: ManualClock) -> None:
    SendTickets(db, clock).ensure_indexes()

    expiry = db[TICKETS].index_information()["expiry"]
    assert expiry["key"] == [("opened_at", 1)]
    assert expiry["expireAfterSeconds"] == RETENTION.total_seconds() == 7 * 86400


@pytest.fixture
def unguarded(
    db: Database[Doc], clock: ManualClock, directory: Directory, provider: FakeProvider
) -> tuple[OutboxStore, Dispatcher]:
    store = OutboxStore(db, clock, "none")
    store.ensure_indexes()
    config = DispatchConfig(lease_seconds=LEASE.total_seconds(), max_attempts=MAX_ATTEMPTS)
    return store, Dispatcher(store, directory, provider, CountingPacer(), clock, config)


def test_without_a_guard_a_message_is_sent_once_and_no_ticket_is_written(
    unguarded: tuple[OutboxStore, Dispatcher], provider: FakeProvider, db: Database[Doc]
) -> None:
    store, dispatcher = unguarded
    doc_id = submit(store)

    dispatcher.run_once()
    dispatcher.run_once()

    assert status(store, doc_id)["state"] == "sent"
    assert len(provider.calls) == 1
    assert db[TICKETS].count_documents({}) == 0


def test_without_a_guard_a_dead_worker_after_the_request_left_is_unknown(
    unguarded: tuple[OutboxStore, Dispatcher], provider: FakeProvider, clock: ManualClock
) -> None:
    store, dispatcher = unguarded
    doc_id = submit(store)
    dispatcher.admit()
    [dead] = store.claim(1, LEASE)
    store.renew(dead, LEASE, in_flight=True)
    clock.advance(LEASE.total_seconds() + 1)

    report = dispatcher.run_once()

    assert report.recovered == 1
    assert (outbox(store, doc_id)["state"], outbox(store, doc_id)["error"]["code"]) == (
        "unknown",
        "lease_expired",
    )
    assert provider.calls == []


def test_without_a_guard_a_dead_worker_before_sending_is_queued_again(
    unguarded: tuple[OutboxStore, Dispatcher], provider: FakeProvider, clock: ManualClock
) -> None:
    store, dispatcher = unguarded
    doc_id = submit(store)
    dispatcher.admit()
    store.claim(1, LEASE)
    clock.advance(LEASE.total_seconds() + 1)

    dispatcher.run_once()

    assert status(store, doc_id)["state"] == "sent"
    assert len(provider.calls) == 1
