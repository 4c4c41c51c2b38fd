"""Polling for receipts backs off and stops at the horizon, leaving the message `sent`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from jobs.dispatch.receipts import ReceiptConfig, poll
from jobs.doubles.clock import ManualClock
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.store import OutboxStore


class Records:
    """Records without receipts; counts lookups."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def get(self, provider_id: str) -> dict[str, Any]:
        self.lookups.append(provider_id)
        return {"status": "delivered", "delivery_receipts": []}

    def between(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        return iter(())


def test_lookups_back_off_then_stop_at_the_horizon(store: OutboxStore, clock: ManualClock) -> None:
    now = clock.now()
    store.outbox.insert_one(
        {"_id": "m", "state": "sent", "provider_id": "mdr2-1", "sent_at": now, "rev": 1}
    )
    delivery, records = DeliveryStore(store), Records()
    config = ReceiptConfig(poll_after=timedelta(minutes=1), poll_horizon=timedelta(minutes=5))
    looked_at = []
    for _ in range(10 * 60):
        clock.advance(1)
        if poll(delivery, records, clock, config):
            looked_at.append(int((clock.now() - now).total_seconds()))
    assert looked_at == [60, 120, 240]
    doc = store.outbox.find_one({"_id": "m"}) or {}
    assert (doc["state"], doc["poll_done"], doc["polls"]) == ("sent", True, 3)
