"""Fixtures shared by every test group: the database server, the Flowroute simulator, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from jobs.simulator.server import FlowrouteSimulator
from tests.processes import reap
from tests.servers.mongo_server import MongoServer, launch, launch_with_auth

ACCESS_KEY = "test-access-key-7f3a"
SECRET_KEY = "test-secret-key-91c2"
ADMIN_PASSWORD = "test-admin-password-3e8d"
SERVER_DIRS = ("integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration and tests/e2e needs the real server."""
    for item in items:
        if Path(str(item.fspath)).parent.name in SERVER_DIRS:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = launch(tmp_path_factory.mktemp("mongo"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """A second server, FerretDB 2 with authentication on, for the tests of logging in; its
    `uri` logs in as the administrator (see tests/servers/mongo_server.py: `add_user`)."""
    server = launch_with_auth(tmp_path_factory.mktemp("mongo-auth"), ADMIN_PASSWORD)
    yield server
    server.close()


@contextmanager
def fresh_database(uri: str) -> Iterator[Database[dict[str, Any]]]:
    """A database of its own on the server at `uri`, dropped afterwards."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        uri, tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield client[name]
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
def db(mongo_server: MongoServer) -> Iterator[Database[dict[str, Any]]]:
    """A fresh database on the real server for one test."""
    with fresh_database(mongo_server.uri) as database:
        yield database


@pytest.fixture(scope="module")
def module_db(mongo_server: MongoServer) -> Iterator[Database[dict[str, Any]]]:
    """A fresh database for a module-scoped fixture: one run, once per worker, that the module's
    tests examine from different sides and do not change."""
    with fresh_database(mongo_server.uri) as database:
        yield database


@pytest.fixture
def simulator() -> Iterator[FlowrouteSimulator]:
    """The local Flowroute, with the rate limit lifted."""
    with FlowrouteSimulator(ACCESS_KEY, SECRET_KEY, rate_per_second=None) as sim:
        yield sim


@dataclass
class Cli:
    """Runs `sms-outbox` as a user types it, with settings in the environment."""

    env: dict[str, str]
    cwd: Path
    argv0: list[str] = field(default_factory=list)
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        exe = shutil.which("sms-outbox")
        self.argv0 = [exe] if exe else [sys.executable, "-m", "scheduler.cli"]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv0, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start a command in the background; `stop_all` (the fixture's teardown) ends it."""
        process = subprocess.Popen(
            [*self.argv0, *args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        """Stop every process `popen` started that still runs (SIGTERM, then SIGKILL)."""
        reap(self.started)


def cli_env(
    uri: str, database: str, flowroute_url: str, keys_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment a daemon or CLI call runs with in these tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMS_OUTBOX_")}
    env.update(
        SMS_OUTBOX_MONGODB__URI=uri,
        SMS_OUTBOX_MONGODB__DATABASE=database,
        SMS_OUTBOX_FLOWROUTE__BASE_URL=flowroute_url,
        SMS_OUTBOX_FLOWROUTE__ACCESS_KEY=ACCESS_KEY,
        SMS_OUTBOX_FLOWROUTE__SECRET_KEY=SECRET_KEY,
        SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND="0",
        SMS_OUTBOX_DISPATCH__POLL_SECONDS="0.1",
        SMS_OUTBOX_LOGGING__FORMAT="json",
        SMS_OUTBOX_SECURITY__KEYS_DIR=str(keys_dir),
        # Tests run at any hour; the quiet-hours tests turn them back on.
        SMS_OUTBOX_QUIET_HOURS__ENABLED="false",
    )
    env.update(extra)
    return env


@pytest.fixture
def cli(
    mongo_server: MongoServer,
    db: Database[dict[str, Any]],
    simulator: FlowrouteSimulator,
    tmp_path: Path,
) -> Iterator[Cli]:
    cli = Cli(cli_env(mongo_server.uri, db.name, simulator.url, tmp_path / "keys"), tmp_path)
    yield cli
    cli.stop_all()
