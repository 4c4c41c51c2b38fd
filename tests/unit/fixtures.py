"""Fixtures for the store and cycle tests, shared by the unit tests (on mongomock) and the
server-backed tests (on the real server): each suite brings its own `db`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pymongo.database import Database

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.mongo.directory import Directory
from jobs.mongo.guard import GuardSetting
from jobs.mongo.store import Doc, OutboxStore
from tests.unit.fakes import (
    LEASE,
    MAX_ATTEMPTS,
    OTHER_SENDER,
    RECIPIENT,
    RECIPIENT_2,
    SENDER,
    UNVERIFIED,
    CountingPacer,
    FakeProvider,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# Both send guards production uses: tickets (FerretDB 1.x, unknown servers) and none (MongoDB,
# FerretDB 2). The shared store and cycle suites run under each.
GUARDS: tuple[GuardSetting, ...] = ("tickets", "none")


def guarded_store(db: Database[Doc], clock: ManualClock, guard: GuardSetting) -> OutboxStore:
    outbox = OutboxStore(db, clock, guard)
    outbox.ensure_indexes()
    return outbox


@pytest.fixture
def store(db: Database[Doc], clock: ManualClock) -> OutboxStore:
    return guarded_store(db, clock, "tickets")


@pytest.fixture
def directory(db: Database[Doc], clock: ManualClock) -> Directory:
    """alice may send from SENDER and OTHER_SENDER; two verified recipients and one unverified."""
    people = Directory(db)
    people.ensure_indexes()
    people.grant("alice", SENDER)
    people.grant("alice", OTHER_SENDER)
    people.add(RECIPIENT, verified=True, now=clock.now())
    people.add(RECIPIENT_2, verified=True, now=clock.now())
    people.add(UNVERIFIED, verified=False, now=clock.now())
    return people


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def pacer() -> CountingPacer:
    return CountingPacer()


@pytest.fixture
def make_dispatcher(
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    pacer: CountingPacer,
    clock: ManualClock,
) -> Callable[..., Dispatcher]:
    """Build a Dispatcher on the shared store, directory, provider, pacer and clock."""

    def build(**config: Any) -> Dispatcher:
        settings = {"lease_seconds": LEASE.total_seconds(), "max_attempts": MAX_ATTEMPTS, **config}
        return Dispatcher(store, directory, provider, pacer, clock, DispatchConfig(**settings))

    return build


@pytest.fixture
def dispatcher(make_dispatcher: Callable[..., Dispatcher]) -> Dispatcher:
    return make_dispatcher()
