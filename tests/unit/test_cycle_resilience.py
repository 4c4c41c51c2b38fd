"""A bug met by one message neither stops the cycle nor holds up the rest of the batch."""

from __future__ import annotations

from jobs.dispatch.dispatcher import Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.mongo.store import OutboxStore
from tests.unit.fakes import LEASE, RECIPIENT, RECIPIENT_2, FakeProvider
from tests.unit.helpers import outbox, status, submit


def test_a_crash_while_sending_one_message_does_not_hold_up_the_others(
    dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    first = submit(store, to=RECIPIENT, body="first")
    second = submit(store, to=RECIPIENT_2, body="second")

    def explode_once() -> None:
        provider.on_send = None
        raise ValueError("a bug in the provider")

    provider.on_send = explode_once
    report = dispatcher.run_once()

    assert report.outcomes == {"crashed": 1, "sent": 1}
    assert status(store, second)["state"] == "sent"
    # The crashed one keeps its claim until the lease runs out; its request had been marked as
    # going out, so recovery must not send it again blindly.
    assert outbox(store, first)["state"] == "sending"
    clock.advance(LEASE.total_seconds() + 1)
    dispatcher.run_once()
    assert status(store, first)["state"] == "unknown"
    assert status(store, first)["error"]["code"] == "lease_expired"
    assert [to for to, _, _ in provider.calls].count(RECIPIENT) == 1
