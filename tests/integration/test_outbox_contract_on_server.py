"""The outbox contract, held by the MongoDB store on the real server."""

from __future__ import annotations

import pytest
from pymongo.database import Database

from jobs.doubles.clock import ManualClock
from jobs.mongo.store import Doc, OutboxStore
from tests.outbox_contract import OutboxContract


class TestMongoStoreOnServer(OutboxContract):
    @pytest.fixture
    def outbox(self, db: Database[Doc], clock: ManualClock) -> OutboxStore:
        store = OutboxStore(db, clock)
        store.ensure_indexes()
        return store
