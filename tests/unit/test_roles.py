"""Database roles grant each program only what it needs."""

from __future__ import annotations

from typing import Any

from jobs.mongo.roles import DAEMON, OPERATOR, PRODUCER, RECEIVER, apply, definitions


def actions(role: str) -> dict[str, set[str]]:
    return {p["resource"]["collection"]: set(p["actions"]) for p in definitions("smsdb")[role]}


def test_every_privilege_is_scoped_to_the_installation_database() -> None:
    for privileges in definitions("smsdb").values():
        assert {p["resource"]["db"] for p in privileges} == {"smsdb"}


def test_producers_may_only_insert_messages_and_read_statuses() -> None:
    expected = {"outbox": {"insert"}, "message_status": {"find"}, "daemon_state": {"find"}}
    assert actions(PRODUCER) == expected


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


class RoleServer:
    """The role commands of a MongoDB database, in memory (FerretDB, the suite's server, has
    none, so `init --roles` is checked here and against the server in tests/e2e/test_cli.py)."""

    name = "smsdb"

    def __init__(self) -> None:
        self.roles: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[str] = []

    def command(self, command: str, role: str, **fields: Any) -> dict[str, Any]:
        self.calls.append(command)
        if command == "rolesInfo":
            return {"roles": [{"role": role}] if role in self.roles else []}
        assert command in ("createRole", "updateRole") and fields["roles"] == []
        assert (role in self.roles) == (command == "updateRole"), f"{command} {role}"
        self.roles[role] = fields["privileges"]
        return {"ok": 1}


def test_init_roles_creates_each_role_with_its_privileges_then_updates_them() -> None:
    server = RoleServer()

    first = apply(server)  # type: ignore[arg-type]
    server.roles[OPERATOR] = []  # an operator's role edited by hand is put right again
    second = apply(server)  # type: ignore[arg-type]

    expected = definitions("smsdb")
    assert first == [f"created {role}" for role in expected]
    assert second == [f"updated {role}" for role in expected]
    assert server.roles == expected
    assert server.calls.count("createRole") == server.calls.count("updateRole") == len(expected)
