"""Database roles: least privilege for producers, operators and the daemon, and the per-user
status views through which a producer follows its own messages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from pymongo.database import Database

from jobs.mongo.account import STATE
from jobs.mongo.connection import translating
from jobs.mongo.directory import AUTHORIZED, USERS
from jobs.mongo.inbox import INBOX
from jobs.mongo.optin import CODES, EVENTS, HOURS, JOINS, SLOTS
from jobs.mongo.pacing_blocks import PACING
from jobs.mongo.queue import QUEUE
from jobs.mongo.spent import SPENT
from jobs.mongo.store import OUTBOX, STATUS
from jobs.mongo.tickets import TICKETS

PRODUCER = "smsOutboxProducer"
OPERATOR = "smsOutboxOperator"
DAEMON = "smsOutboxDaemon"
RECEIVER = "smsOutboxReceiver"
INBOUND = "inbound"
# What a producer sees of its own messages: no provider ids (a forged receipt needs one), no
# receipts, reconciliation evidence or history (they hold provider ids too), no reply links.
PRODUCER_VIEW_FIELDS = (
    "_id", "state", "kind", "to", "from", "user", "campaign", "key", "attempts", "error",
    "recipients", "segments", "encoding", "created_at", "updated_at", "sent_at", "due_at",
    "cancelled", "delivered_at", "final_at",
)  # fmt: skip


def definitions(database: str) -> dict[str, list[dict[str, Any]]]:
    """Each role's privileges on `database`.

    Producers may only add to the outbox and read the account hold (each user's own statuses
    through its view, see `user_definitions`); operators manage senders and recipients; only the
    daemon changes message state; the internet-facing webhook receiver may only add to the
    inbox. None may drop or reconfigure anything.
    """

    def on(collection: str, *actions: str) -> dict[str, Any]:
        return {"resource": {"db": database, "collection": collection}, "actions": list(actions)}

    return {
        PRODUCER: [on(OUTBOX, "insert"), on(STATE, "find")],
        # `recipients check --fix` deletes the records it merged; `enqueue` makes sure of the
        # store's indexes (the send guard's among them) before its first keyed insert, and the
        # commands that write grants or recipients of the directory's.
        OPERATOR: [
            on(AUTHORIZED, "find", "insert", "update", "remove", "createIndex"),
            on(USERS, "find", "insert", "update", "remove", "createIndex"),
            on(OUTBOX, "find", "insert", "createIndex", "listIndexes"),
            on(STATUS, "find", "createIndex"),
            on(TICKETS, "createIndex"),
            on(INBOUND, "find"),
            on(INBOX, "find"),  # `status` lists the callbacks Flowroute did not confirm
            on(STATE, "find"),
            on(EVENTS, "find"),
        ],
        RECEIVER: [on(INBOX, "insert")],
        DAEMON: [
            # dropIndex: the global key index of earlier versions gives way to (user, key).
            # listIndexes: whether that index is still there.
            on(OUTBOX, "find", "update", "insert", "createIndex", "dropIndex", "listIndexes"),
            on(STATUS, "find", "insert", "update", "createIndex"),
            on(QUEUE, "find", "insert", "update", "remove"),
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


def status_view(user: str) -> str:
    """The name of `user`'s status view (escaped as key files are, so any user name fits)."""
    return f"{STATUS}.{quote(user, safe='@_-')}"


def producer_role(user: str) -> str:
    """The role a producer that sends as `user` is given: the producer role and its view."""
    return f"{PRODUCER}.{quote(user, safe='@_-')}"


def view_pipeline(user: str) -> list[dict[str, Any]]:
    """`user`'s rows of `message_status`, with the fields a producer may see."""
    return [{"$match": {"user": user}}, {"$project": dict.fromkeys(PRODUCER_VIEW_FIELDS, 1)}]


def user_definitions(
    database: str, users: Iterable[str]
) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, str]]]]:
    """Each user's producer role: `find` on its own status view, plus the producer role.

    MongoDB roles cannot filter rows, so `message_status` itself stays closed to producers; a
    view is a namespace of its own, and reading it needs no privilege on the collection under it.
    """
    return {
        producer_role(user): (
            [{"resource": {"db": database, "collection": status_view(user)}, "actions": ["find"]}],
            [{"role": PRODUCER, "db": database}],
        )
        for user in users
    }


@translating
def apply(db: Database[dict[str, Any]]) -> list[str]:
    """Create or update the roles in `db`, and a status view and producer role for each user
    granted in `authorized`; safe to run again (and again after granting a new user). Needs a
    user-admin connection."""
    done = []
    for name, privileges in definitions(db.name).items():
        done.append(_put_role(db, name, privileges, []))
    users = sorted(u for u in db[AUTHORIZED].distinct("user") if isinstance(u, str))
    for user in users:
        view = status_view(user)
        if view in db.list_collection_names(filter={"name": view}):
            db.command("collMod", view, viewOn=STATUS, pipeline=view_pipeline(user))
        else:
            db.command("create", view, viewOn=STATUS, pipeline=view_pipeline(user))
    for name, (privileges, inherited) in user_definitions(db.name, users).items():
        done.append(_put_role(db, name, privileges, inherited))
    return done


def _put_role(
    db: Database[dict[str, Any]],
    name: str,
    privileges: list[dict[str, Any]],
    inherited: list[dict[str, str]],
) -> str:
    if db.command("rolesInfo", name).get("roles"):
        db.command("updateRole", name, privileges=privileges, roles=inherited)
        return f"updated {name}"
    db.command("createRole", name, privileges=privileges, roles=inherited)
    return f"created {name}"
