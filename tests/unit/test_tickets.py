"""Send tickets keep two workers that both believe they hold a claim from both sending.

Servers whose find-and-modify is a read and a separate write (FerretDB 1.x) can hand one claim
to two workers; these tests replay that interleaving by hand on the in-memory database.
"""

from __future__ import annotations

from typing import Any

from jobs.dispatch.dispatcher import Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.mongo.store import OutboxStore
from tests.unit.fakes import LEASE, FakeProvider
from tests.unit.helpers import status, submit


def test_a_second_ticket_for_the_same_claim_is_refused(
    dispatcher: Dispatcher, store: OutboxStore
) -> None:
    submit(store)
    dispatcher.admit()
    [doc] = store.claim(1, LEASE)

    assert store.guard.take(doc) is not None
    assert store.guard.take({**doc, "claim_token": "another worker"}) is None


def test_a_stale_claim_written_over_a_send_in_flight_does_not_send_twice(
    dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    doc_id = submit(store)
    dispatcher.admit()
    racer: dict[str, Any] = {}

    def stale_claim_lands() -> None:
        # Another worker read the document while it was queued and now writes its claim back,
        # over this worker's in-flight mark: the same revision, a different token.
        current = store.outbox.find_one({"_id": doc_id})
        assert current is not None
        racer.update(current, claim_token="racer", in_flight=False, rev=current["rev"])
        store.outbox.replace_one({"_id": doc_id}, racer)
        provider.on_send = None

    provider.on_send = stale_claim_lands
    dispatcher.run_once()

    assert store.guard.take(racer) is None, "the racer must not get a ticket for this claim"
    clock.advance(LEASE.total_seconds() + 1)
    dispatcher.run_once()

    assert len(provider.calls) == 1
    assert status(store, doc_id)["state"] == "sent"
    assert status(store, doc_id)["provider_id"] == next(iter(provider.accepted))


def test_recovery_reads_an_unanswered_ticket_as_in_doubt(
    dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    doc_id = submit(store)
    dispatcher.admit()
    [doc] = store.claim(1, LEASE)
    store.guard.take(doc)  # the worker took its ticket and died before marking the send

    clock.advance(LEASE.total_seconds() + 1)
    dispatcher.run_once()

    assert status(store, doc_id)["state"] == "unknown"
    assert provider.calls == []
