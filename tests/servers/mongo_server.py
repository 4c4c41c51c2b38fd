"""The MongoDB-compatible server the server-backed tests run against, started here or given."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal
from urllib.parse import quote

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.servers import ferretdb
from tests.servers.errors import ServerNotControlledError, ServerUnavailableError, log_tail
from tests.servers.ferretdb import Backend
from tests.servers.ports import free_ports
from tests.servers.postgres_cluster import PostgresCluster

Kind = Literal["external", "mongod", "ferretdb", "ferretdb2"]

START_TIMEOUT: Final = 30.0
EXTERNAL_PING_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 30.0
POLL_INTERVAL: Final = 0.02


class MongoServer:
    """A server this suite started (mongod or FerretDB), or an external one given by MONGODB_URI.

    `kind` is "ferretdb2" for FerretDB 2.x and "ferretdb" for 1.x. `backend` names FerretDB's
    storage: "documentdb" (PostgreSQL with DocumentDB, 2.x), or "postgresql" or "sqlite" (1.x);
    it is "" for other kinds. `postgres` is the cluster under FerretDB, if any.
    """

    def __init__(
        self,
        uri: str,
        kind: Kind,
        port: int = 0,
        argv: list[str] | None = None,
        data_dir: Path | None = None,
        log_path: Path | None = None,
        backend: Backend = "",
        postgres: PostgresCluster | None = None,
    ) -> None:
        self.uri = uri
        self.kind: Kind = kind
        self.backend: Backend = backend
        self._port = port
        self._argv = argv
        self._data_dir = data_dir
        self._log_path = log_path
        self.postgres = postgres
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        backend = f", backend={self.backend!r}" if self.backend else ""
        return f"MongoServer(kind={self.kind!r}{backend}, uri={self.uri!r})"

    def stop(self) -> None:
        """Stop the server process (SIGTERM, then wait), keeping its data.

        FerretDB's PostgreSQL keeps running: clients lose the server all the same.
        """
        self._require_control("stop")
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def start(self) -> None:
        """(Re)start the server on the same port and data; return once it answers ping."""
        argv, log_path = self._require_control("start")
        if self._process is not None and self._process.poll() is None:
            return
        try:
            if self.postgres is not None:
                self.postgres.start()
            with log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + START_TIMEOUT
            _wait_until_listening(self._process, self._port, deadline)
            _ping(self.uri, deadline)
        except ServerUnavailableError as exc:
            self.stop()
            logs = [log_path] + ([self.postgres.log_path] if self.postgres else [])
            tails = "\n".join(log_tail(path) for path in logs if path.exists())
            raise ServerUnavailableError(f"{exc}\n{tails}") from exc
        except BaseException:
            self.stop()
            raise

    def close(self) -> None:
        """Stop the server and delete its throw-away data; leave an external one alone."""
        if self.kind == "external":
            return
        with contextlib.ExitStack() as cleanup:
            if self._data_dir is not None:
                cleanup.callback(shutil.rmtree, self._data_dir, ignore_errors=True)
            if self.postgres is not None:
                cleanup.callback(self.postgres.close)
            self.stop()

    def _require_control(self, action: str) -> tuple[list[str], Path]:
        if self._argv is None or self._log_path is None:
            raise ServerNotControlledError(
                f"cannot {action} the server at MONGODB_URI={self.uri}: this test needs a server "
                "the suite controls; unset MONGODB_URI to let the suite start one"
            )
        return self._argv, self._log_path


def launch(
    workdir: Path, environ: Mapping[str, str] | None = None, port: int | None = None
) -> MongoServer:
    """Return a running server: MONGODB_URI if set, else a fresh mongod, else a fresh FerretDB.

    FerretDB is 2.x on a fresh PostgreSQL 15 cluster with DocumentDB, installed by
    install-documentdb.sh if need be; SMS_OUTBOX_FERRETDB_BACKEND=postgresql|sqlite chooses
    FerretDB 1.x instead. Logs live in `workdir`; `environ` defaults to the process environment.
    `port` fixes the server's port (scripts/dev-server); by default any free one is used.
    """
    env = os.environ if environ is None else environ
    external_uri = env.get("MONGODB_URI")
    if external_uri:
        try:
            _ping(external_uri, time.monotonic() + EXTERNAL_PING_TIMEOUT)
        except ServerUnavailableError as exc:
            raise ServerUnavailableError(f"MONGODB_URI is set but {exc}") from exc
        return MongoServer(external_uri, "external")

    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    free, postgres_port = _free_ports(2)
    port = port or free
    uri = f"mongodb://127.0.0.1:{port}/"

    mongod = shutil.which("mongod", path=env.get("PATH"))
    if mongod is not None:
        argv = [mongod, "--dbpath", str(data_dir), "--bind_ip", "127.0.0.1", "--port", str(port)]
        server = MongoServer(uri, "mongod", port, argv, data_dir, workdir / "mongod.log")
    else:
        chosen = ferretdb.plan(workdir, env, port, postgres_port)
        kind: Kind = "ferretdb2" if chosen.version == 2 else "ferretdb"
        log_path = workdir / "ferretdb.log"
        server = MongoServer(
            uri, kind, port, chosen.argv, data_dir, log_path, chosen.backend, chosen.postgres
        )
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def launch_with_auth(
    workdir: Path, admin_password: str, environ: Mapping[str, str] | None = None
) -> MongoServer:
    """A fresh FerretDB 2 on PostgreSQL with DocumentDB that requires clients to log in.

    Its `uri` logs in as the administrator (PostgreSQL's `postgres` user with `admin_password`);
    `uri_for` gives the URI of another user. MONGODB_URI and mongod are not used here.
    """
    env = os.environ if environ is None else environ
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    port, postgres_port = _free_ports(2)
    chosen = ferretdb.plan(workdir, env, port, postgres_port, admin_password)
    uri = uri_for(f"mongodb://127.0.0.1:{port}/", "postgres", admin_password)
    server = MongoServer(
        uri, "ferretdb2", port, chosen.argv, data_dir, workdir / "ferretdb.log",
        chosen.backend, chosen.postgres,
    )  # fmt: skip
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def add_user(admin_uri: str, user: str, password: str) -> str:
    """Create a user that may read and write every database (FerretDB 2 grants nothing finer);
    returns the URI that logs in as them."""
    client: MongoClient[dict[str, object]] = MongoClient(admin_uri, serverSelectionTimeoutMS=10_000)
    try:
        client.admin.command(
            "createUser",
            user,
            pwd=password,
            roles=[
                {"role": "clusterAdmin", "db": "admin"},
                {"role": "readWriteAnyDatabase", "db": "admin"},
            ],
        )
    finally:
        client.close()
    return uri_for(admin_uri, user, password)


def uri_for(uri: str, user: str, password: str) -> str:
    """`uri` (with or without credentials) logging in as `user` with `password`."""
    scheme, rest = uri.split("://", 1)
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}"


def _free_ports(count: int) -> list[int]:
    """Distinct ports on 127.0.0.1 that nothing is listening on right now (tests/servers/ports)."""
    return free_ports(count)


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    """Poll until `process` accepts connections on `port`; raise if it exits or time runs out."""
    while True:
        if process.poll() is not None:
            raise ServerUnavailableError(
                f"{process.args!r} exited with code {process.returncode} before listening"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=POLL_INTERVAL * 10):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ServerUnavailableError(
                    f"{process.args!r} did not listen on 127.0.0.1:{port} in time: {exc}"
                ) from exc
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=POLL_INTERVAL)


def _ping(uri: str, deadline: float) -> None:
    """Wait for the server at `uri` to answer ping, until `deadline` on the monotonic clock."""
    timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        raise ServerUnavailableError(
            f"server at {uri} did not answer ping: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        client.close()
