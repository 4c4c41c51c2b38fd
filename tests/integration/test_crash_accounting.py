"""Crash accounting on the real server: `unknown` only for a request that may have left, and a
batch claimed when the database fails is handed back when it returns, not after its lease."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from pymongo.database import Database
from pymongo.errors import AutoReconnect

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.errors import StoreUnavailable
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from jobs.mongo.tickets import SendTickets
from tests.unit.fakes import (
    LEASE,
    MAX_ATTEMPTS,
    RECIPIENT,
    RECIPIENT_2,
    CountingPacer,
    FakeProvider,
)
from tests.unit.helpers import status, submit


class Killed(BaseException):
    """The process died here: nothing after this line of the daemon runs."""


class KilledBeforeTicket(SendTickets):
    """A worker killed after marking its message in flight, before taking the send ticket."""

    def take(self, doc: Mapping[str, Any]) -> str | None:
        raise Killed


def restarted(
    db: Database[Doc], directory: Directory, provider: FakeProvider, clock: ManualClock
) -> Dispatcher:
    """A fresh daemon on the same database, as after a restart."""
    config = DispatchConfig(lease_seconds=LEASE.total_seconds(), max_attempts=MAX_ATTEMPTS)
    return Dispatcher(OutboxStore(db, clock), directory, provider, CountingPacer(), clock, config)


def test_a_kill_between_the_in_flight_mark_and_the_ticket_is_sent_exactly_once(
    db: Database[Doc],
    dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    doc_id = submit(store)
    store._guard = KilledBeforeTicket(db, clock)
    with pytest.raises(Killed):
        dispatcher.run_once()
    marked = store.find(doc_id)
    assert marked is not None
    assert (marked["state"], marked["in_flight"]) == ("sending", True)

    clock.advance(LEASE.total_seconds() + 1)
    daemon = restarted(db, directory, provider, clock)
    daemon.run_once()
    daemon.run_once()

    assert provider.recipients() == [RECIPIENT]
    assert status(store, doc_id)["state"] == "sent"


def test_a_worker_that_stalled_before_its_ticket_cannot_send_after_recovery(
    db: Database[Doc],
    dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    doc_id = submit(store)
    dispatcher.admit()
    [claimed] = store.claim(1, LEASE)
    store.renew(claimed, LEASE, in_flight=True, extra={"ticket": f"{doc_id}:{claimed['rev']}"})

    clock.advance(LEASE.total_seconds() + 1)
    daemon = restarted(db, directory, provider, clock)
    daemon.run_once()
    daemon.run_once()

    assert store.guard.take(claimed) is None, "the stalled worker must not get its ticket"
    assert provider.recipients() == [RECIPIENT]
    assert status(store, doc_id)["state"] == "sent"


def test_a_ticket_taken_before_the_kill_leaves_the_message_unknown(
    db: Database[Doc],
    dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    doc_id = submit(store)

    def killed() -> None:
        raise Killed

    provider.on_send = killed
    with pytest.raises(Killed):
        dispatcher.run_once()
    provider.on_send = None

    clock.advance(LEASE.total_seconds() + 1)
    restarted(db, directory, provider, clock).run_once()

    assert status(store, doc_id)["state"] == "unknown"
    assert status(store, doc_id)["error"]["code"] == "lease_expired"
    assert len(provider.calls) == 1


class Outage:
    """Makes wrapped collections fail as an unreachable server does, from the moment `after`
    calls of `method` have been made until `end()`."""

    def __init__(self, method: str, after: int, *, lands: bool = False) -> None:
        self.method, self.after, self.calls, self.down = method, after, 0, False
        # The write that meets the outage lands on the server; only its answer is lost.
        self.lands = lands

    def wrap(self, collection: Any) -> Any:
        return _Flaky(collection, self)

    def end(self) -> None:
        self.down = False

    def check(self, name: str) -> bool:
        """True when the call should land and then fail."""
        if name == self.method:
            self.calls += 1
            if self.calls > self.after and self.after >= 0:
                self.down, self.after = True, -1
                if self.lands:
                    return True
        if self.down:
            raise AutoReconnect("connection refused (simulated outage)")
        return False


class _Flaky:
    def __init__(self, collection: Any, outage: Outage) -> None:
        self._collection, self._outage = collection, outage

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._outage.check(name):
                attr(*args, **kwargs)
                raise AutoReconnect("connection lost after the write (simulated outage)")
            return attr(*args, **kwargs)

        return call


def test_a_batch_claimed_when_the_database_fails_is_handed_back_when_it_returns(
    dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    ids = [submit(store, to=RECIPIENT, body=f"m{i}") for i in range(3)]
    ids += [submit(store, to=RECIPIENT_2, body=f"n{i}") for i in range(2)]
    dispatcher.admit()
    # The third claim of the batch meets the outage: two messages are already claimed.
    outage = Outage("find_one_and_update", after=2)
    store.outbox = outage.wrap(store.outbox)
    store.projection.outbox = store.outbox
    store.projection.status = outage.wrap(store.projection.status)
    tickets = store.guard
    assert isinstance(tickets, SendTickets)
    tickets.tickets = outage.wrap(tickets.tickets)
    store._spent.spent = outage.wrap(store._spent.spent)
    directory.authorized = outage.wrap(directory.authorized)
    directory.users = outage.wrap(directory.users)

    with pytest.raises(StoreUnavailable):
        dispatcher.run_once()
    assert provider.calls == []
    outage.end()
    # The database is back at once: nothing waits out a lease.
    for _ in range(3):
        dispatcher.run_once()

    assert Counter(status(store, i)["state"] for i in ids) == Counter({"sent": 5})
    assert len(provider.calls) == 5
    assert all(status(store, i)["attempts"] == 1 for i in ids)


def test_a_spent_id_whose_answer_an_outage_lost_is_not_taken_for_a_replay(
    dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
) -> None:
    doc_id = submit(store)
    dispatcher.admit()
    # The ticket's insert goes through; the spent id's lands but its answer is lost.
    outage = Outage("insert_one", after=1, lands=True)
    store._spent.spent = outage.wrap(store._spent.spent)
    store.outbox = outage.wrap(store.outbox)
    store.projection.outbox = store.outbox
    store.projection.status = outage.wrap(store.projection.status)
    tickets = store.guard
    assert isinstance(tickets, SendTickets)
    tickets.tickets = outage.wrap(tickets.tickets)

    with pytest.raises(StoreUnavailable):
        dispatcher.run_once()
    outage.end()
    dispatcher.run_once()
    dispatcher.run_once()

    assert provider.recipients() == [RECIPIENT]
    assert status(store, doc_id)["state"] == "sent"
