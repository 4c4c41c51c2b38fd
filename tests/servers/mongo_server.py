"""The MongoDB-compatible server the server-backed tests run against, started here or given."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal
from urllib.parse import quote

from pymongo import MongoClient
from pymongo.errors import PyMongoError

Kind = Literal["external", "mongod", "ferretdb"]
Backend = Literal["", "sqlite", "postgresql"]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT: Final = Path(__file__).with_name("install-ferretdb.sh")
POSTGRES_INSTALL_SCRIPT: Final = Path(__file__).with_name("install-postgresql.sh")
DEFAULT_FERRETDB: Final = REPO_ROOT / ".cache" / "ferretdb" / "bin" / "ferretdb"
GO_FALLBACK: Final = Path("/usr/local/go/bin/go")
DEBIAN_POSTGRES_BINS: Final = Path("/usr/lib/postgresql")
BACKEND_ENV: Final = "SMS_OUTBOX_FERRETDB_BACKEND"
POSTGRES_USER: Final = "postgres"

START_TIMEOUT: Final = 30.0
EXTERNAL_PING_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 30.0
BUILD_TIMEOUT: Final = 900.0
POLL_INTERVAL: Final = 0.02
LOG_TAIL_LINES: Final = 40


class ServerUnavailableError(RuntimeError):
    """No MongoDB-compatible server could be started; the message says exactly why."""


class ServerNotControlledError(RuntimeError):
    """The test needs to stop or restart the server, but the server was given by MONGODB_URI."""


class MongoServer:
    """A server this suite started (mongod or FerretDB), or an external one given by MONGODB_URI."""

    def __init__(
        self,
        uri: str,
        kind: Kind,
        port: int = 0,
        argv: list[str] | None = None,
        data_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.uri = uri
        self.kind: Kind = kind
        self._port = port
        self._argv = argv
        self._data_dir = data_dir
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"MongoServer(kind={self.kind!r}, uri={self.uri!r})"

    def stop(self) -> None:
        """Stop the server process (SIGTERM, then wait), keeping its data directory."""
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
        """(Re)start the server on the same port and data directory; return once it answers ping."""
        argv, log_path = self._require_control("start")
        if self._process is not None and self._process.poll() is None:
            return
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        try:
            _wait_until_listening(self._process, self._port, deadline)
            _ping(self.uri, deadline)
        except ServerUnavailableError as exc:
            self.stop()
            raise ServerUnavailableError(f"{exc}\n{_log_tail(log_path)}") from exc

    def close(self) -> None:
        """Stop the server and delete its throw-away data directory; leave an external one alone."""
        if self.kind == "external":
            return
        self.stop()
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def _require_control(self, action: str) -> tuple[list[str], Path]:
        if self._argv is None or self._log_path is None:
            raise ServerNotControlledError(
                f"cannot {action} the server at MONGODB_URI={self.uri}: this test needs a server "
                "the suite controls; unset MONGODB_URI to let the suite start one"
            )
        return self._argv, self._log_path


def launch(workdir: Path, environ: Mapping[str, str] | None = None) -> MongoServer:
    """Return a running server: MONGODB_URI if set, else a fresh mongod, else a fresh FerretDB.

    Logs and the data directory live in `workdir`; `environ` defaults to the process environment.
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
    port = _free_port()
    uri = f"mongodb://127.0.0.1:{port}/"

    mongod = shutil.which("mongod", path=env.get("PATH"))
    if mongod is not None:
        argv = [mongod, "--dbpath", str(data_dir), "--bind_ip", "127.0.0.1", "--port", str(port)]
        server = MongoServer(uri, "mongod", port, argv, data_dir, workdir / "mongod.log")
    else:
        ferretdb = _ferretdb_binary(workdir, env)
        argv = [
            str(ferretdb),
            "--handler=sqlite",
            f"--sqlite-url=file:{quote(str(data_dir.resolve()))}/",
            f"--listen-addr=127.0.0.1:{port}",
            "--telemetry=disable",
            # Without these FerretDB writes state.json to the working directory and listens on 8088.
            "--state-dir=-",
            "--debug-addr=-",
        ]
        server = MongoServer(uri, "ferretdb", port, argv, data_dir, workdir / "ferretdb.log")
    server.start()
    return server


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


def _free_port() -> int:
    """Ask the kernel for a port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
