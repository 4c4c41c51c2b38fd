"""The MongoDB-compatible server the server-backed tests run against, started here or given."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal
from urllib.parse import quote

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.servers.errors import ServerNotControlledError, ServerUnavailableError
from tests.servers.postgres_cluster import (
    DEBIAN_POSTGRES_BINS,
    PostgresCluster,
    find_bin_dir,
)

Kind = Literal["external", "mongod", "ferretdb"]
Backend = Literal["", "sqlite", "postgresql"]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT: Final = Path(__file__).with_name("install-ferretdb.sh")
POSTGRES_INSTALL_SCRIPT: Final = Path(__file__).with_name("install-postgresql.sh")
DEFAULT_FERRETDB: Final = REPO_ROOT / ".cache" / "ferretdb" / "bin" / "ferretdb"
GO_FALLBACK: Final = Path("/usr/local/go/bin/go")
BACKEND_ENV: Final = "SMS_OUTBOX_FERRETDB_BACKEND"

START_TIMEOUT: Final = 30.0
EXTERNAL_PING_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 30.0
BUILD_TIMEOUT: Final = 900.0
POLL_INTERVAL: Final = 0.02
LOG_TAIL_LINES: Final = 40


class MongoServer:
    """A server this suite started (mongod or FerretDB), or an external one given by MONGODB_URI.

    `backend` names FerretDB's storage ("sqlite" or "postgresql"); it is "" for other kinds.
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
        self._postgres = postgres
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
            if self._postgres is not None:
                self._postgres.start()
            with log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + START_TIMEOUT
            _wait_until_listening(self._process, self._port, deadline)
            _ping(self.uri, deadline)
        except ServerUnavailableError as exc:
            self.stop()
            logs = [log_path] + ([self._postgres.log_path] if self._postgres else [])
            tails = "\n".join(_log_tail(path) for path in logs if path.exists())
            raise ServerUnavailableError(f"{exc}\n{tails}") from exc

    def close(self) -> None:
        """Stop the server and delete its throw-away data; leave an external one alone."""
        if self.kind == "external":
            return
        with contextlib.ExitStack() as cleanup:
            if self._data_dir is not None:
                cleanup.callback(shutil.rmtree, self._data_dir, ignore_errors=True)
            if self._postgres is not None:
                cleanup.callback(self._postgres.close)
            self.stop()

    def _require_control(self, action: str) -> tuple[list[str], Path]:
        if self._argv is None or self._log_path is None:
            raise ServerNotControlledError(
                f"cannot {action} the server at MONGODB_URI={self.uri}: this test needs a server "
                "the suite controls; unset MONGODB_URI to let the suite start one"
            )
        return self._argv, self._log_path


def launch(workdir: Path, environ: Mapping[str, str] | None = None) -> MongoServer:
    """Return a running server: MONGODB_URI if set, else a fresh mongod, else a fresh FerretDB.

    FerretDB stores its data in a fresh PostgreSQL cluster when PostgreSQL is installed, else in
    SQLite; SMS_OUTBOX_FERRETDB_BACKEND=postgresql|sqlite chooses. Logs live in `workdir`;
    `environ` defaults to the process environment.
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
    port, postgres_port = _free_ports(2)
    uri = f"mongodb://127.0.0.1:{port}/"

    mongod = shutil.which("mongod", path=env.get("PATH"))
    if mongod is not None:
        argv = [mongod, "--dbpath", str(data_dir), "--bind_ip", "127.0.0.1", "--port", str(port)]
        server = MongoServer(uri, "mongod", port, argv, data_dir, workdir / "mongod.log")
    else:
        ferretdb = _ferretdb_binary(workdir, env)
        postgres_bin = _ferretdb_postgres_bin(workdir, env)
        argv = [
            str(ferretdb),
            f"--listen-addr=127.0.0.1:{port}",
            "--telemetry=disable",
            # Without these FerretDB writes state.json to the working directory and listens on 8088.
            "--state-dir=-",
            "--debug-addr=-",
        ]
        backend: Backend = "sqlite" if postgres_bin is None else "postgresql"
        postgres = None
        if postgres_bin is None:
            argv += ["--handler=sqlite", f"--sqlite-url=file:{quote(str(data_dir.resolve()))}/"]
        else:
            postgres = PostgresCluster(postgres_bin, workdir, postgres_port)
            argv += ["--handler=postgresql", f"--postgresql-url={postgres.url}"]
        server = MongoServer(
            uri, "ferretdb", port, argv, data_dir, workdir / "ferretdb.log", backend, postgres
        )
    try:
        server.start()
    except ServerUnavailableError:
        server.close()
        raise
    return server


def _ferretdb_postgres_bin(workdir: Path, env: Mapping[str, str]) -> Path | None:
    """The PostgreSQL bin directory for FerretDB's postgresql backend, or None for SQLite.

    Missing binaries are installed with install-postgresql.sh where it can (root, apt-get), so
    the README's one test command is enough on a fresh machine.
    """
    choice = env.get(BACKEND_ENV, "")
    if choice not in ("", "postgresql", "sqlite"):
        raise ServerUnavailableError(f"{BACKEND_ENV}={choice} is neither postgresql nor sqlite")
    if choice == "sqlite":
        return None
    bin_dir = find_bin_dir(env)
    if bin_dir is None:
        log_path = workdir / "install-postgresql.log"
        with log_path.open("wb") as log:
            subprocess.run(
                ["bash", str(POSTGRES_INSTALL_SCRIPT)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        bin_dir = find_bin_dir(env)
    if bin_dir is None and choice == "postgresql":
        raise ServerUnavailableError(
            f"{BACKEND_ENV}=postgresql but there is no initdb and pg_ctl on PATH or in "
            f"{DEBIAN_POSTGRES_BINS}/*/bin; install them with {POSTGRES_INSTALL_SCRIPT}"
        )
    if bin_dir is None:
        warnings.warn(
            "FerretDB is using its SQLite backend, which scans whole collections for every "
            f"query: the multi-daemon tests take minutes. Install PostgreSQL with "
            f"{POSTGRES_INSTALL_SCRIPT}, or set {BACKEND_ENV}=sqlite to choose SQLite.",
            stacklevel=3,
        )
    return bin_dir


def _ferretdb_binary(workdir: Path, env: Mapping[str, str]) -> Path:
    """Find the FerretDB binary, building it with install-ferretdb.sh when only Go is available."""
    configured = env.get("SMS_OUTBOX_FERRETDB")
    if configured:
        binary = Path(configured)
        if not os.access(binary, os.X_OK):
            raise ServerUnavailableError(
                f"SMS_OUTBOX_FERRETDB={configured} is not an executable file"
            )
        return binary
    if os.access(DEFAULT_FERRETDB, os.X_OK):
        return DEFAULT_FERRETDB

    go = shutil.which("go", path=env.get("PATH")) or (
        str(GO_FALLBACK) if os.access(GO_FALLBACK, os.X_OK) else None
    )
    if go is None:
        raise ServerUnavailableError(
            "no MongoDB-compatible server: MONGODB_URI is unset, mongod is not on PATH, "
            f"there is no FerretDB at {DEFAULT_FERRETDB} (SMS_OUTBOX_FERRETDB is unset), and "
            f"there is no Go toolchain to build one with {INSTALL_SCRIPT}"
        )

    log_path = workdir / "install-ferretdb.log"
    child_env = dict(env)
    child_env["PATH"] = f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}"
    with log_path.open("wb") as log:
        try:
            result = subprocess.run(
                ["bash", str(INSTALL_SCRIPT), str(DEFAULT_FERRETDB.parent.parent)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ServerUnavailableError(
                f"building FerretDB with {INSTALL_SCRIPT} took over {BUILD_TIMEOUT:.0f}s\n"
                f"{_log_tail(log_path)}"
            ) from None
    if result.returncode != 0 or not os.access(DEFAULT_FERRETDB, os.X_OK):
        raise ServerUnavailableError(
            f"building FerretDB with {INSTALL_SCRIPT} failed (exit {result.returncode})\n"
            f"{_log_tail(log_path)}"
        )
    return DEFAULT_FERRETDB


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for distinct ports on 127.0.0.1 that nothing is listening on right now."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


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


def _log_tail(path: Path) -> str:
    """The last lines of a log file, labelled with its path, for error messages."""
    try:
        lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    return f"last {len(lines)} lines of {path}:\n" + "\n".join(lines)
