"""Daemons racing for the same candidates: the loser reads again instead of coming back empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobs.clock import SystemClock
from jobs.mongo.store import OutboxStore
from tests.integration.helpers import Db

LEASE = timedelta(minutes=5)


def fill(db: Db, count: int) -> None:
    """`count` due messages, as intake leaves them."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    db["outbox"].insert_many(
        {"state": "queued", "kind": "message", "priority": 0, "user": "ops", "attempts": 0,
         "rev": 1, "due_at": start + timedelta(milliseconds=i), "to": "12065550101", "body": "x"}
        for i in range(count)
    )  # fmt: skip


class Overtaken(OutboxStore):
    """A store whose every candidate read is followed by a rival claiming those candidates."""

    def __init__(self, db: Db, rival: OutboxStore) -> None:
        super().__init__(db, SystemClock())
        self.rival = rival
        self.rounds = 0

    def _candidates(self, now: datetime, wanted: int) -> tuple[list[Any], bool]:
        order, more = super()._candidates(now, wanted)
        self.rounds += 1
        if self.rounds == 1:
            self.rival.claim(len(order), LEASE)  # takes exactly what we are about to claim
        return order, more


def test_a_claim_whose_candidates_were_all_taken_reads_again_while_work_is_due(db: Db) -> None:
    OutboxStore(db, SystemClock()).ensure_indexes()
    fill(db, 50)
    store = Overtaken(db, OutboxStore(db, SystemClock()))

    claimed = store.claim(10, LEASE)

    assert len(claimed) == 10
    assert store.rounds == 2
    tokens = {doc["claim_token"] for doc in db["outbox"].find({"state": "sending"})}
    assert len(tokens) == db["outbox"].count_documents({"state": "sending"})
