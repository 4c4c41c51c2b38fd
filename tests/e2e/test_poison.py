"""No document can stop the fleet: poison inserted next to a legitimate message, the way a
producer (outbox inserts) or an operator (users inserts) could write it. The legitimate message
goes out exactly once and `run --until-idle` exits 0; the poison is set aside with a reason."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId
from pymongo.database import Database

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli
from tests.integration.helpers import SENDER, keys_dir, seed, wait_for
from tests.processes import stop

Db = Database[dict[str, Any]]
LEGIT, OTHER = "12065550101", "12065550199"
MAX_BSON = 16 * 1024 * 1024


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"a": value}
    return value


def _new(**fields: Any) -> dict[str, Any]:
    """A producer's new document (no state), unsigned."""
    return {"user": SENDER, "to": OTHER, "body": "poison", **fields}


def _queued(now: datetime, **fields: Any) -> dict[str, Any]:
    """A document inserted already queued and due, as if admitted."""
    return {"state": "queued", "due_at": now, "priority": 100, **fields}


def _sending(now: datetime, **fields: Any) -> dict[str, Any]:
    """A document whose claim expired an hour ago, as if its worker died."""
    lease = now - timedelta(hours=1)
    return {"state": "sending", "claim_token": "gone", "lease_until": lease, "attempts": 1,
            "rev": 1, **fields}  # fmt: skip


def _filled(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` padded to within a few bytes of the 16 MiB a document may hold: any field the
    daemon adds makes it too large."""
    doc = {"_id": ObjectId(), **doc, "pad": ""}
    doc["pad"] = "x" * (MAX_BSON - len(bson.encode(doc)) - 8)
    return doc


def _filled_small(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` filled to the same limit with thousands of fields under 1 KiB each."""
    doc = {"_id": ObjectId(), **doc}
    size = len(bson.encode(doc))
    n = 0
    while MAX_BSON - size > 2100:
        doc[f"f{n:05d}"] = "x" * 1000
        size += 1000 + 13
        n += 1
    doc["rest"] = ""
    doc["rest"] = "x" * (MAX_BSON - len(bson.encode(doc)) - 8)
    return doc


POISONS: dict[str, Callable[[datetime], dict[str, Any]]] = {
    "int64_max_attempts": lambda now: _queued(now, attempts=Int64(2**63 - 1)),
    "int64_max_rev": lambda now: _queued(now, attempts=0, rev=Int64(2**63 - 1)),
    "near_16_mib_new": lambda now: _filled(_new()),
    "near_16_mib_queued": lambda now: _filled(_queued(now, attempts=0)),
    "near_16_mib_small_fields": lambda now: _filled_small(_queued(now, attempts=0)),
    "expired_sending_huge": lambda now: _filled(_sending(now, in_flight=True, to=OTHER)),
    "nested_90_new": lambda now: _new(body=_nested(90)),
    "nested_90_queued": lambda now: _queued(now, attempts=0, extra=_nested(90)),
    "array_to": lambda now: _new(to=[OTHER, LEGIT]),
    "array_from": lambda now: _new(**{"from": ["12065550100"]}),
    "array_body": lambda now: _new(body=["poison"]),
    "array_user": lambda now: _new(user=[SENDER]),
    "array_campaign": lambda now: _new(campaign=["c1"]),
    "array_to_queued": lambda now: _queued(now, attempts=0, to=[LEGIT], user=[SENDER]),
    "id_dict": lambda now: _new(_id={"a": 1}),
    "id_binary": lambda now: _new(_id=Binary(b"\x00\x01", 5)),
    "id_decimal128": lambda now: _new(_id=Decimal128("1.5")),
    "id_float": lambda now: _new(_id=2.5),
    "id_datetime": lambda now: _new(_id=now),
    "id_minkey": lambda now: _new(_id=MinKey()),
    "id_int64": lambda now: _new(_id=Int64(2**63 - 1)),
    "id_maxkey": lambda now: _new(_id=MaxKey()),
    "id_objectid_queued": lambda now: _queued(now, _id=ObjectId(), attempts=0, to=OTHER),
    "id_dict_queued": lambda now: _queued(now, _id={"x": [1]}, attempts=0, to=OTHER),
    "id_binary_sending": lambda now: _sending(now, _id=Binary(b"\xff", 0), in_flight=False),
}


def _ran_clean(cli: Cli) -> str:
    result = cli("run", "--until-idle", timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-3000:]}"
    return result.stderr


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poison_document_does_not_stop_the_legitimate_message(
    cli: Cli, db: Db, simulator: FlowrouteSimulator, poison: str
) -> None:
    seed(db, [LEGIT, OTHER], keys_dir(cli.env), messages=False)
    seed_message(db, cli)
    bad = POISONS[poison](datetime.now(UTC))
    db["outbox"].insert_one(bad)

    _ran_clean(cli)

    assert [m.to for m in simulator.messages()] == [LEGIT]
    legit = db["outbox"].find_one({"to": LEGIT, "signature": {"$exists": True}}) or {}
    assert legit.get("state") == "sent"
    held = db["outbox"].find_one({"_id": bad["_id"]}, {"state": 1, "error": 1, "set_aside": 1})
    assert held is not None
    # Rejected with a reason, or (a claim that expired) left unknown for reconciliation.
    assert held.get("state") in ("rejected", "unknown"), held


def seed_message(db: Db, cli: Cli) -> None:
    """The one legitimate message: signed by the seeded sender, to a verified recipient."""
    from jobs.keys import KeyRing
    from jobs.rules import signing

    key = KeyRing(keys_dir(cli.env)).user_key(SENDER) or ""
    doc = {"_id": ObjectId(), "user": SENDER, "to": LEGIT, "body": "the real one"}
    doc["signature"] = signing.sign(key, doc)
    db["outbox"].insert_one(doc)


def test_an_array_phone_in_users_does_not_crash_the_batch_of_its_number(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    seed(db, [LEGIT], keys_dir(cli.env), messages=False)
    db["users"].insert_one({"phone": [LEGIT, OTHER], "verified": True})
    seed_message(db, cli)

    _ran_clean(cli)

    assert [m.to for m in simulator.messages()] == [LEGIT]


def test_a_rejected_poison_carries_the_server_s_reason(cli: Cli, db: Db) -> None:
    seed(db, [LEGIT], keys_dir(cli.env), messages=False)
    seed_message(db, cli)
    bad = _queued(datetime.now(UTC), attempts=Int64(2**63 - 1))
    db["outbox"].insert_one(bad)

    _ran_clean(cli)

    held = db["outbox"].find_one({"_id": bad["_id"]}) or {}
    assert held["state"] == "rejected"
    assert held["error"]["code"] == "invalid_document"
    assert re.search(r"overflow|integer|range|\$inc", held["error"]["detail"], re.I), held["error"]


@pytest.mark.parametrize(
    "record",
    [
        {"phone": "9" * (9 * 1024 * 1024), "verified": True},  # a child too large to insert
        {"phone": [OTHER], "verified": True},
        {"phone": {"n": OTHER}, "verified": True},
    ],
    ids=["huge_phone", "array_phone", "dict_phone"],
)
def test_a_poison_recipient_does_not_stop_a_broadcast(
    cli: Cli, db: Db, simulator: FlowrouteSimulator, record: dict[str, Any]
) -> None:
    seed(db, [LEGIT], keys_dir(cli.env), messages=False)
    db["users"].insert_one(record)
    made = cli("broadcast", "--user", SENDER, "--body", "to everyone")
    assert made.returncode == 0, made.stderr

    _ran_clean(cli)

    assert [m.to for m in simulator.messages()].count(LEGIT) == 1
    request = db["outbox"].find_one({"audience": {"$exists": True}}) or {}
    assert request.get("state") == "expanded", request.get("error")


def test_an_oversized_producer_document_is_refused_with_its_size(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    seed(db, [LEGIT, OTHER], keys_dir(cli.env), messages=False)
    seed_message(db, cli)
    bad = _new(pad="x" * 200_000)
    db["outbox"].insert_one(bad)

    _ran_clean(cli)

    assert [m.to for m in simulator.messages()] == [LEGIT]
    held = db["outbox"].find_one({"_id": bad["_id"]}) or {}
    assert (held["state"], held["error"]["code"]) == ("rejected", "invalid_document")
    assert "too large" in held["error"]["detail"] and "bytes" in held["error"]["detail"]
    status = db["message_status"].find_one({"_id": bad["_id"]}) or {}
    assert status.get("state") == "rejected"


def test_a_poison_inbox_entry_is_set_aside_and_the_cycle_goes_on(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    seed(db, [LEGIT], keys_dir(cli.env), messages=False)
    seed_message(db, cli)
    fields = {"inbound_id": "mdr2-x", "from": OTHER, "to": "12065550100", "body": "STOP"}
    entry = _filled({"kind": "inbound", "fields": fields, "received_at": datetime.now(UTC)})
    entry["fields"]["body"], entry["pad"] = entry.pop("pad"), ""
    db["inbox"].insert_one(entry)

    _ran_clean(cli)

    assert [m.to for m in simulator.messages()] == [LEGIT]
    kept = db["inbox"].find_one({"_id": entry["_id"]}, {"state": 1, "outcome": 1}) or {}
    assert kept.get("state") == "applied", kept


def test_a_poison_unknown_message_does_not_stop_reconciliation(
    cli: Cli, db: Db, simulator: FlowrouteSimulator
) -> None:
    seed(db, [LEGIT], keys_dir(cli.env), messages=False)
    now = datetime.now(UTC)
    bad = _filled({"state": "unknown", "to": OTHER, "body": "x", "user": SENDER,
                   "updated_at": now - timedelta(days=2), "rev": 1})  # fmt: skip
    db["outbox"].insert_one(bad)
    cli.env.update(
        SMS_OUTBOX_RECEIPTS__CHECK_SECONDS="0.5", SMS_OUTBOX_RECEIPTS__RECONCILE_AFTER_SECONDS="0"
    )
    daemon = cli.popen("run")
    try:
        seed_message(db, cli)

        def settled() -> bool:
            held = db["outbox"].find_one({"_id": bad["_id"]}, {"state": 1}) or {}
            return held.get("state") != "unknown" and len(simulator.messages()) == 1

        wait_for(settled, 60, "the poison set aside and the legitimate message sent")
    finally:
        _, stderr = stop(daemon, timeout=30)
    assert daemon.returncode == 0, stderr
    assert "check.failed" not in stderr and "check.crashed" not in stderr
    assert [m.to for m in simulator.messages()] == [LEGIT]
