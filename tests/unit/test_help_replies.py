"""HELP is answered once a day per number, on an injected clock (mongomock)."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from jobs.dispatch.confirm import Lookups
from jobs.dispatch.inbound import InboundHandler, ReplyTexts
from jobs.doubles.clock import ManualClock
from jobs.mongo.directory import Directory
from jobs.mongo.inbound import InboundLog
from jobs.mongo.store import Doc, OutboxStore
from tests.unit.fakes import RECIPIENT, SENDER

DAY = 24 * 3600


class Records:
    """Flowroute's records of the texts this test sends in: each one as its callback says."""

    def __init__(self) -> None:
        self.texts: dict[str, dict[str, Any]] = {}

    def get(self, provider_id: str) -> dict[str, Any]:
        return self.texts[provider_id]


def test_help_is_answered_again_only_once_a_full_day_has_passed(
    db: Database[Doc], store: OutboxStore, directory: Directory, clock: ManualClock
) -> None:
    inbound = InboundLog(db)
    inbound.ensure_indexes()
    handler = InboundHandler(store, directory, inbound, clock, ReplyTexts(), None)
    texts = iter(range(100))
    records = Records()

    def help_from(number: str) -> str | None:
        fields = {"inbound_id": f"mdr2-{next(texts)}", "from": number, "to": SENDER,
                  "body": "HELP"}  # fmt: skip
        records.texts[fields["inbound_id"]] = {"direction": "inbound", **fields}
        return handler({"fields": fields}, Lookups(records, per_cycle=5)).outcome  # type: ignore[arg-type]

    assert help_from(RECIPIENT) == "replied"
    clock.advance(DAY - 60)
    assert help_from(RECIPIENT) == "help_already_sent", "a minute short of a day"
    assert help_from("12065550177") == "replied", "another number has its own day"
    clock.advance(61)
    assert help_from(RECIPIENT) == "replied", "a day after the last answer"
    clock.advance(3600)
    assert help_from(RECIPIENT) == "help_already_sent"
    replies = store.outbox.count_documents({"campaign": {"$regex": "^reply:help:"}})
    assert replies == 3
