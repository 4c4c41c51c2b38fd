"""Database roles grant each program only what it needs."""

from __future__ import annotations

from typing import Any

from jobs.mongo.roles import (
    DAEMON,
    OPERATOR,
    PRODUCER,
    RECEIVER,
    apply,
    definitions,
    producer_role,
    status_view,
    user_definitions,
    view_pipeline,
)


def actions(role: str) -> dict[str, set[str]]:
    return {p["resource"]["collection"]: set(p["actions"]) for p in definitions("smsdb")[role]}


def test_every_privilege_is_scoped_to_the_installation_database() -> None:
    for privileges in definitions("smsdb").values():
        assert {p["resource"]["db"] for p in privileges} == {"smsdb"}


def test_producers_may_only_insert_messages_and_read_the_account_hold() -> None:
    expected = {"outbox": {"insert"}, "daemon_state": {"find"}}
    assert actions(PRODUCER) == expected


def test_producers_read_nothing_of_statuses_inbound_texts_or_replies() -> None:
    granted = actions(PRODUCER)
    for collection in ("message_status", "outbox", "inbox", "inbound", "users", "sent_ids"):
        assert "find" not in granted.get(collection, set())


def test_a_producer_s_own_role_reads_only_its_own_status_view() -> None:
    roles = user_definitions("smsdb", ["alice", "bob/../x"])
    privileges, inherited = roles[producer_role("alice")]
    assert privileges == [
        {"resource": {"db": "smsdb", "collection": "message_status.alice"}, "actions": ["find"]}
    ]
    assert inherited == [{"role": PRODUCER, "db": "smsdb"}]
    other, _ = roles[producer_role("bob/../x")]
    assert (
        other[0]["resource"]["collection"]
        == status_view("bob/../x")
        == "message_status.bob%2F..%2Fx"
    )


def test_a_status_view_holds_its_user_s_rows_without_provider_ids_or_receipts() -> None:
    match, project = view_pipeline("alice")
    assert match == {"$match": {"user": "alice"}}
    shown = set(project["$project"])
    assert {"_id", "state", "error", "to", "campaign", "key", "delivered_at"} <= shown
    assert not {"provider_id", "receipts", "reconciliation", "history", "reply_to"} & shown


def test_only_the_daemon_may_write_spent_ids_and_the_account_hold() -> None:
    for role in (PRODUCER, OPERATOR):
        granted = actions(role)
        assert "sent_ids" not in granted
        assert granted.get("daemon_state", set()) <= {"find"}
    assert {"find", "insert", "update"} <= actions(DAEMON)["sent_ids"]
    assert {"find", "insert", "update", "remove"} <= actions(DAEMON)["daemon_state"]


def test_only_the_daemon_may_change_a_message_or_its_status() -> None:
    for role in (PRODUCER, OPERATOR):
        granted = actions(role)
        assert "update" not in granted.get("outbox", set())
        assert granted.get("message_status", set()) <= {"find", "createIndex"}
    assert {"find", "update"} <= actions(DAEMON)["outbox"]
    assert {"insert", "update"} <= actions(DAEMON)["message_status"]


def test_nobody_may_drop_or_remove_messages() -> None:
    for role in (PRODUCER, OPERATOR, DAEMON):
        for collection in ("outbox", "message_status"):
            assert not actions(role).get(collection, set()) & {"remove", "dropCollection"}


def test_the_daemon_cannot_grant_senders() -> None:
    assert actions(DAEMON)["authorized"] <= {"find", "createIndex"}


def test_the_webhook_receiver_may_only_insert_into_the_inbox() -> None:
    assert actions(RECEIVER) == {"inbox": {"insert"}}


def test_the_daemon_applies_the_inbox_but_cannot_remove_from_it() -> None:
    assert actions(DAEMON)["inbox"] == {"find", "update", "createIndex"}


class RecordingDb:
    """Just enough of a database for `apply`: it records the commands it is sent."""

    name = "smsdb"

    def __init__(self, users: list[object], views: list[str]) -> None:
        self.users, self.views = users, views
        self.commands: list[tuple[str, str, dict[str, Any]]] = []

    def command(self, name: str, target: str, **fields: Any) -> dict[str, Any]:
        self.commands.append((name, target, fields))
        return {"roles": []} if name == "rolesInfo" else {"ok": 1}

    def __getitem__(self, collection: str) -> Any:
        assert collection == "authorized"
        return self

    def distinct(self, field: str) -> list[object]:
        return self.users

    def list_collection_names(self, filter: dict[str, str]) -> list[str]:
        return [v for v in self.views if v == filter["name"]]


def test_applying_the_roles_makes_each_granted_user_a_view_and_a_role() -> None:
    db = RecordingDb(["bob", "alice", 7], views=["message_status.bob"])

    done = apply(db)  # type: ignore[arg-type]

    views = {(name, target): fields for name, target, fields in db.commands if "viewOn" in fields}
    assert views == {
        ("create", "message_status.alice"): {
            "viewOn": "message_status", "pipeline": view_pipeline("alice"),
        },
        ("collMod", "message_status.bob"): {
            "viewOn": "message_status", "pipeline": view_pipeline("bob"),
        },
    }  # fmt: skip
    created = {target: f for name, target, f in db.commands if name == "createRole"}
    assert created[producer_role("alice")]["roles"] == [{"role": PRODUCER, "db": "smsdb"}]
    assert f"created {producer_role('bob')}" in done and len(done) == 6
