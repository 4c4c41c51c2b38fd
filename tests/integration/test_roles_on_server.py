"""Each program's real work, run as its own user on a server that requires a login, with every
command it sends checked against the privileges of its role (jobs/mongo/roles.py).

FerretDB 2.5 authenticates (its users are PostgreSQL's), but it has no role commands, and every
user it creates may read and write every collection: it cannot refuse a command that a role
lacks. So the check a role-enforcing MongoDB makes is made here: pymongo's command monitoring
records every command a program sends, and `needed` names the privileges MongoDB demands for it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from bson import ObjectId
from pymongo import MongoClient, monitoring
from pymongo.errors import OperationFailure

from jobs.keys import KeyRing
from jobs.mongo import roles
from jobs.mongo.inbox import Inbox
from jobs.rules import signing
from jobs.simulator.server import FlowrouteSimulator
from scheduler import cli
from tests.conftest import ACCESS_KEY, SECRET_KEY, cli_env
from tests.integration.helpers import Db
from tests.servers.mongo_server import MongoServer, add_user, uri_for

Privilege = tuple[str, str]  # (collection, action); "" for the database itself
SOURCE, FRIEND, STRANGER = "12065550100", "12065550101", "12065550102"
# Commands any logged-in user may send: the handshake, cursors, and reading the server's clock.
FREE = frozenset(
    {"hello", "ismaster", "isMaster", "ping", "buildInfo", "endSessions", "getMore",
     "killCursors", "saslStart", "saslContinue", "authenticate", "getnonce"}
)  # fmt: skip


def needed(command_name: str, command: dict[str, Any]) -> set[Privilege]:
    """The privileges MongoDB demands of `command` (its access-control reference, per command)."""
    if command_name in FREE:
        return set()
    target = command.get(command_name)
    collection = target if isinstance(target, str) else ""
    if command_name in ("find", "count", "distinct"):
        return {(collection, "find")}
    if command_name == "aggregate":
        wanted = {(collection, "find")}
        for stage in command.get("pipeline", []):
            for name in ("$lookup", "$graphLookup", "$unionWith"):
                joined = stage.get(name)
                if joined is not None:
                    other = joined if isinstance(joined, str) else joined.get("from", "")
                    wanted.add((other, "find"))
            if "$out" in stage or "$merge" in stage:
                wanted.add(("?", "$out/$merge"))
        return wanted
    if command_name == "insert":
        return {(collection, "insert")}
    if command_name == "update":
        wanted = {(collection, "update")}
        if any(u.get("upsert") for u in command.get("updates", [])):
            wanted.add((collection, "insert"))
        return wanted
    if command_name == "delete":
        return {(collection, "remove")}
    if command_name == "findAndModify":
        if command.get("remove"):
            return {(collection, "find"), (collection, "remove")}
        wanted = {(collection, "find"), (collection, "update")}
        if command.get("upsert"):
            wanted.add((collection, "insert"))
        return wanted
    if command_name == "createIndexes":
        return {(collection, "createIndex")}
    # Anything else (listIndexes, listCollections, drop, ...) needs a privilege no role has.
    return {(collection, command_name)}


def granted(role: str, database: str) -> set[Privilege]:
    return {
        (p["resource"]["collection"], action)
        for p in roles.definitions(database)[role]
        for action in p["actions"]
    }


class Recorder(monitoring.CommandListener):
    """Every command sent to `database` by any client of this process, while recording."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.database = ""
        self.commands: list[tuple[str, dict[str, Any]]] | None = None

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            if self.commands is not None and event.database_name in (self.database, "admin"):
                self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Only starts are recorded."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Only starts are recorded."""

    @contextmanager
    def recording(self, database: str) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        commands: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            self.database, self.commands = database, commands
        try:
            yield commands
        finally:
            with self._lock:
                self.commands = None


_recorder: Recorder | None = None


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    """One listener for the whole process: pymongo hands global listeners to every new client,
    the ones the CLI and the daemon make included, and cannot take them back."""
    global _recorder
    if _recorder is None:
        _recorder = Recorder()
        monitoring.register(_recorder)
    return _recorder


class Installation:
    """A database on the login-only server, with one user per role."""

    def __init__(self, server: MongoServer) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.name = f"t_{suffix}"
        self.admin: MongoClient[dict[str, Any]] = MongoClient(
            server.uri, tz_aware=True, serverSelectionTimeoutMS=10_000
        )
        self.db: Db = self.admin[self.name]
        self.users = {role: f"{role}_{suffix}" for role in roles.definitions(self.name)}
        self.passwords = {role: uuid.uuid4().hex for role in self.users}
        self.uris = {
            role: add_user(server.uri, user, self.passwords[role])
            for role, user in self.users.items()
        }

    def close(self) -> None:
        try:
            self.admin.drop_database(self.name)
            for user in self.users.values():
                self.admin.admin.command("dropUser", user)
        finally:
            self.admin.close()


@pytest.fixture
def own_logging() -> Iterator[None]:
    """The CLI run in this process configures structlog for itself (to the captured stderr):
    the tests after this one get the configuration they had."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def installation(auth_server: MongoServer) -> Iterator[Installation]:
    made = Installation(auth_server)
    yield made
    made.close()


def missing(role: str, database: str, commands: list[tuple[str, dict[str, Any]]]) -> set[str]:
    """The commands `role` lacks a privilege for, as 'command collection: action'; a producer
    holds alice's role too (its own status view)."""
    allowed = granted(role, database)
    if role == roles.PRODUCER:
        own, _ = roles.user_definitions(database, ["alice"])[roles.producer_role("alice")]
        allowed |= {(p["resource"]["collection"], a) for p in own for a in p["actions"]}
    return {
        f"{name} {collection}: {action}"
        for name, command in commands
        for collection, action in needed(name, command) - allowed
    }


@pytest.mark.slow
@pytest.mark.parametrize("guard", ["none", "tickets"])
def test_each_program_sends_only_commands_its_role_allows(
    guard: str,
    installation: Installation,
    recorder: Recorder,
    own_logging: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, db = installation.name, installation.db
    keys = tmp_path / "keys"
    lacking: dict[str, set[str]] = {}
    with FlowrouteSimulator(ACCESS_KEY, SECRET_KEY, rate_per_second=None) as sim:

        def as_role(role: str, *argv: str) -> int:
            env = cli_env(installation.uris[role], name, sim.url, keys,
                          SMS_OUTBOX_MONGODB__SEND_GUARD=guard)  # fmt: skip
            for key in [k for k in env if k.startswith("SMS_OUTBOX_")]:
                monkeypatch.setenv(key, env[key])
            return cli.main(list(argv))

        # The administrator's part: the indexes, and a recipient spelled three ways.
        assert as_role(roles.DAEMON, "init") == 0
        db["users"].insert_many(
            [{"phone": "+" + STRANGER, "verified": True}, {"phone": STRANGER[1:]}]
        )

        with recorder.recording(name) as operator:
            assert as_role(roles.OPERATOR, "senders", "grant", "alice", SOURCE) == 0
            assert as_role(roles.OPERATOR, "recipients", "add", FRIEND, "--verified") == 0
            assert as_role(roles.OPERATOR, "recipients", "check", "--fix") == 0
            assert as_role(roles.OPERATOR, "recipients", "list") == 0
            assert as_role(roles.OPERATOR, "enqueue", "--user", "alice", "--to", FRIEND,
                           "--body", "from the operator") == 0  # fmt: skip
            assert as_role(roles.OPERATOR, "status") == 0
        lacking[roles.OPERATOR] = missing(roles.OPERATOR, name, operator)
        assert db["users"].count_documents({"phone": {"$regex": STRANGER[1:]}}) == 1

        with recorder.recording(name) as producer:
            client: MongoClient[dict[str, Any]] = MongoClient(
                installation.uris[roles.PRODUCER], tz_aware=True
            )
            try:
                own = client[name]
                doc = {"_id": ObjectId(), "user": "alice", "to": FRIEND, "body": "from the app"}
                doc["signature"] = signing.sign(KeyRing(keys).user_key("alice") or "", doc)
                own["outbox"].insert_one(doc)
                own[roles.status_view("alice")].find_one({"_id": doc["_id"]})
                own["daemon_state"].find_one({})
            finally:
                client.close()
        lacking[roles.PRODUCER] = missing(roles.PRODUCER, name, producer)

        # A STOP Flowroute has a record of (the daemon confirms it), from the merged recipient.
        _, stop_id = sim.send_inbound(STRANGER, SOURCE, "STOP", url="http://127.0.0.1:9/")
        with recorder.recording(name) as receiver:
            client = MongoClient(installation.uris[roles.RECEIVER], tz_aware=True)
            try:
                fields = {"inbound_id": stop_id, "from": STRANGER, "to": SOURCE,
                          "body": "STOP"}  # fmt: skip
                Inbox(client[name]).add("inbound", fields, datetime.now(UTC))
            finally:
                client.close()
        lacking[roles.RECEIVER] = missing(roles.RECEIVER, name, receiver)

        with recorder.recording(name) as daemon:
            assert as_role(roles.DAEMON, "run", "--until-idle") == 0
        lacking[roles.DAEMON] = missing(roles.DAEMON, name, daemon)
        sent = [(m.to, m.body) for m in sim.messages()]
    capsys.readouterr()

    assert (FRIEND, "from the operator") in sent and (FRIEND, "from the app") in sent
    assert len(sent) == 3, "the two messages and the STOP's confirmation"
    assert len([body for to, body in sent if to == STRANGER]) == 1, "the STOP's confirmation"
    assert (db["users"].find_one({"phone": STRANGER}) or {}).get("opted_out")
    for commands in (operator, producer, receiver, daemon):
        assert commands, "the recorder saw the program's commands"
    assert lacking == {role: set() for role in lacking}


def test_the_check_finds_what_each_role_lacks() -> None:
    """The privilege check itself refuses what a role-enforcing server would."""
    forbidden: dict[str, list[tuple[str, dict[str, Any]]]] = {
        roles.PRODUCER: [("update", {"update": "outbox", "updates": [{"q": {}, "u": {}}]}),
                         ("find", {"find": "users"})],
        roles.OPERATOR: [("findAndModify", {"findAndModify": "outbox", "update": {}}),
                         ("insert", {"insert": "sent_ids"})],
        roles.RECEIVER: [("find", {"find": "inbox"}), ("delete", {"delete": "inbox"})],
        roles.DAEMON: [("delete", {"delete": "outbox"}), ("insert", {"insert": "authorized"}),
                       ("drop", {"drop": "outbox"})],
    }  # fmt: skip
    for role, commands in forbidden.items():
        assert len(missing(role, "smsdb", commands)) == len(commands), role
    upsert = {"update": "users", "updates": [{"q": {}, "u": {}, "upsert": True}]}
    assert missing(roles.OPERATOR, "smsdb", [("update", upsert)]) == set()
    assert missing(roles.RECEIVER, "smsdb", [("update", upsert)]) == {
        "update users: update",
        "update users: insert",
    }


def test_the_server_lets_no_one_in_without_the_right_password(
    installation: Installation,
) -> None:
    uri = installation.uris[roles.PRODUCER]
    for wrong in (uri_for(uri, installation.users[roles.PRODUCER], "not-the-password"),
                  "mongodb://" + uri.rsplit("@", 1)[1]):  # fmt: skip
        client: MongoClient[dict[str, Any]] = MongoClient(wrong, serverSelectionTimeoutMS=5_000)
        try:
            with pytest.raises(OperationFailure):
                client[installation.name]["outbox"].insert_one({"body": "no login"})
        finally:
            client.close()
    assert installation.db["outbox"].count_documents({}) == 0
