"""The send guard on the real server: `auto` reads what the server is, and tickets expire
whether or not the server has TTL indexes."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from jobs.doubles.clock import ManualClock
from jobs.mongo.guard import build
from jobs.mongo.tickets import EXPIRE_EVERY_SECONDS, RETENTION, TICKETS, SendTickets
from jobs.ports import NoGuard

Db = Database[dict[str, Any]]


def test_auto_keeps_tickets_on_ferretdb_1_and_drops_them_on_atomic_servers(db: Db) -> None:
    info = db.command("buildInfo")
    guard = build(db, ManualClock(), "auto")

    if "ferretdbVersion" in info:
        assert isinstance(guard, SendTickets), "FerretDB 1.x does not claim atomically"
    else:
        assert isinstance(guard, NoGuard), f"expected an atomic server, got {info}"


def test_tickets_expire_through_a_ttl_index_on_the_suite_s_server(db: Db) -> None:
    SendTickets(db, ManualClock()).ensure_indexes()

    expiry = db[TICKETS].index_information().get("expiry")
    if "ferretdbVersion" in db.command("buildInfo"):
        assert expiry is None, "FerretDB 1.x has no TTL indexes"
        return
    assert expiry is not None and expiry["expireAfterSeconds"] == RETENTION.total_seconds()


def test_where_the_server_refuses_the_ttl_index_old_tickets_are_removed_by_the_daemon(
    db: Db,
) -> None:
    clock = ManualClock()
    tickets = SendTickets(db, clock, wall=clock)
    old = tickets.take({"_id": "m1", "rev": 2, "claim_token": "t1"})
    clock.advance(RETENTION.total_seconds() + 1)
    recent = tickets.take({"_id": "m2", "rev": 2, "claim_token": "t2"})
    # An index of that name without expiry makes every server refuse the TTL index, as FerretDB
    # 1.x refuses every TTL index.
    db[TICKETS].create_index("opened_at", name="expiry")

    tickets.ensure_indexes()

    assert "expireAfterSeconds" not in db[TICKETS].index_information()["expiry"]
    assert db[TICKETS].find_one({"_id": old}) is None
    assert db[TICKETS].find_one({"_id": recent}) is not None
    clock.advance(RETENTION.total_seconds() + EXPIRE_EVERY_SECONDS)
    tickets.take({"_id": "m3", "rev": 2, "claim_token": "t3"})
    assert db[TICKETS].find_one({"_id": recent}) is None
