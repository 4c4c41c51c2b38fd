"""Database roles: least privilege for producers, operators and the daemon."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from jobs.mongo.account import STATE
from jobs.mongo.connection import translating
from jobs.mongo.directory import AUTHORIZED, USERS
from jobs.mongo.fleet_pacing import PACING
from jobs.mongo.inbox import INBOX
from jobs.mongo.optin import CODES, EVENTS, HOURS, JOINS, SLOTS
from jobs.mongo.spent import SPENT
from jobs.mongo.store import OUTBOX, STATUS
from jobs.mongo.tickets import TICKETS

PRODUCER = "smsOutboxProducer"
OPERATOR = "smsOutboxOperator"
DAEMON = "smsOutboxDaemon"
RECEIVER = "smsOutboxReceiver"
INBOUND = "inbound"


def definitions(database: str) -> dict[str, list[dict[str, Any]]]:
    """Each role's privileges on `database`.

    Producers may only add to the outbox and read statuses; operators manage senders and
    recipients; only the daemon changes message state; the internet-facing webhook receiver may
    only add to the inbox. None may drop or reconfigure anything.
    """

    def on(collection: str, *actions: str) -> dict[str, Any]:
        return {"resource": {"db": database, "collection": collection}, "actions": list(actions)}

    return {
        PRODUCER: [on(OUTBOX, "insert"), on(STATUS, "find"), on(STATE, "find")],
        OPERATOR: [
            on(AUTHORIZED, "find", "insert", "update", "remove"),
            on(USERS, "find", "insert", "update"),
            on(OUTBOX, "find", "insert", "createIndex"),
            on(STATUS, "find"),
            on(INBOUND, "find"),
            on(STATE, "find"),
            on(EVENTS, "find"),
        ],
        RECEIVER: [on(INBOX, "insert")],
        DAEMON: [
            on(OUTBOX, "find", "update", "insert", "createIndex"),
            on(STATUS, "find", "insert", "update", "createIndex"),
            on(TICKETS, "find", "insert", "update", "remove", "createIndex"),
            on(SPENT, "find", "insert", "update", "createIndex"),
            on(STATE, "find", "insert", "update", "remove"),
            on(PACING, "find", "insert", "update", "remove", "createIndex"),
            on(AUTHORIZED, "find", "createIndex"),
            on(USERS, "find", "insert", "update", "createIndex"),
            on(INBOX, "find", "update", "createIndex"),
            on(INBOUND, "find", "insert", "update", "createIndex"),
            # Sign-up (the daemon's JOIN/YES and `sms-outbox web`, which runs with this role).
            *[
                on(c, "find", "insert", "update", "remove", "createIndex")
                for c in (CODES, JOINS, SLOTS, HOURS, EVENTS)
            ],
        ],
    }


@translating
def apply(db: Database[dict[str, Any]]) -> list[str]:
    """Create or update the roles in `db`; safe to run again. Needs a user-admin connection."""
    done = []
    for name, privileges in definitions(db.name).items():
        if db.command("rolesInfo", name).get("roles"):
            db.command("updateRole", name, privileges=privileges, roles=[])
            done.append(f"updated {name}")
        else:
            db.command("createRole", name, privileges=privileges, roles=[])
            done.append(f"created {name}")
    return done
