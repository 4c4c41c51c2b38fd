"""Someone with write access tampers with the daemon's fields: the queue keeps flowing.

On the real server only: mongomock does not fail an `$inc` on text the way servers do.
"""

from __future__ import annotations

from jobs.dispatch.dispatcher import Dispatcher
from jobs.mongo.store import OutboxStore
from tests.unit.fakes import RECIPIENT, RECIPIENT_2, FakeProvider
from tests.unit.helpers import status, submit


def test_a_tampered_counter_does_not_block_the_queue(
    dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
) -> None:
    tampered = submit(store, to=RECIPIENT, body="first", priority=100)
    dispatcher.admit()
    store.outbox.update_one({"_id": tampered}, {"$set": {"attempts": "lots"}})
    other = submit(store, to=RECIPIENT_2, body="second")

    dispatcher.run_once()

    assert status(store, other)["state"] == "sent"
    assert status(store, tampered)["state"] == "rejected"
    assert status(store, tampered)["error"]["code"] == "invalid_document"
