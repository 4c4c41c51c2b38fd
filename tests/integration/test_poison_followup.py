"""The scheduled checks isolate poison documents too: one sent message the server cannot update
does not stop receipt polling for the others."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import bson
from bson import ObjectId

from jobs.simulator.server import FlowrouteSimulator
from tests.integration.helpers import numbers
from tests.integration.stack import Db, stack

MAX_BSON = 16 * 1024 * 1024


def _filled(doc: dict[str, Any]) -> dict[str, Any]:
    doc = {"_id": ObjectId(), **doc, "pad": ""}
    doc["pad"] = "x" * (MAX_BSON - len(bson.encode(doc)) - 8)
    return doc


def test_a_sent_message_too_large_to_update_does_not_stop_polling(
    db: Db, simulator: FlowrouteSimulator
) -> None:
    to, other = numbers(2)
    with stack(db, simulator, [to, other]) as s:
        legit = s.enqueue(to)
        s.drain()
        assert s.state(legit) == "sent"
        sent_at = s.store.clock.now() - timedelta(minutes=10)
        poison = _filled({"state": "sent", "provider_id": "mdr2-poison", "to": other,
                          "sent_at": sent_at, "rev": 1})  # fmt: skip
        db["outbox"].insert_one(poison)

        s.followup.check()

        polled = db["outbox"].find_one({"_id": legit}, {"polls": 1, "state": 1}) or {}
        held = db["outbox"].find_one({"_id": poison["_id"]}, {"state": 1, "error": 1}) or {}
    assert polled.get("polls") == 1 or polled.get("state") == "delivered", polled
    assert (held["state"], held["error"]["code"]) == ("rejected", "invalid_document")
