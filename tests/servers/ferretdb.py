"""FerretDB for the suite: 2.x on PostgreSQL 15 with DocumentDB by default, 1.x by choice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import quote

from tests.servers.errors import ServerUnavailableError, log_tail
from tests.servers.postgres_cluster import (
    DEBIAN_POSTGRES_BINS,
    POSTGRES_USER,
    PostgresCluster,
    find_bin_dir,
)

Backend = Literal["", "documentdb", "postgresql", "sqlite"]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SERVERS: Final = Path(__file__).parent
DOCUMENTDB_INSTALL_SCRIPT: Final = SERVERS / "install-documentdb.sh"
FERRETDB1_INSTALL_SCRIPT: Final = SERVERS / "install-ferretdb.sh"
POSTGRES_INSTALL_SCRIPT: Final = SERVERS / "install-postgresql.sh"
DOCUMENTDB_FERRETDB: Final = REPO_ROOT / ".cache" / "documentdb" / "bin" / "ferretdb"
FERRETDB1: Final = REPO_ROOT / ".cache" / "ferretdb" / "bin" / "ferretdb"
DOCUMENTDB_POSTGRES_BIN: Final = DEBIAN_POSTGRES_BINS / "15" / "bin"
GO_FALLBACK: Final = Path("/usr/local/go/bin/go")
BACKEND_ENV: Final = "SMS_OUTBOX_FERRETDB_BACKEND"
BINARY_ENV: Final = "SMS_OUTBOX_FERRETDB"
BUILD_TIMEOUT: Final = 900.0

# DocumentDB's settings as FerretDB's images set them, plus composite index terms, so that one
# scan of the `claim` index serves both the equality on state and the range on due_at.
DOCUMENTDB_SETTINGS: Final = {
    "shared_preload_libraries": "'pg_cron,pg_documentdb_core,pg_documentdb'",
    "cron.database_name": "'postgres'",
    "max_connections": "300",
    "documentdb.enableNowSystemVariable": "true",
    "documentdb.enableSortbyIdPushDownToPrimaryKey": "true",
    "documentdb.enableUserCrud": "true",
    "documentdb.defaultUseCompositeOpClass": "true",
}


@dataclass
class FerretDB:
    """How to run one FerretDB: its command line, its storage and the cluster holding it."""

    argv: list[str]
    version: Literal[1, 2]
    backend: Backend
    postgres: PostgresCluster | None


def plan(
    workdir: Path,
    env: Mapping[str, str],
    port: int,
    postgres_port: int,
    admin_password: str | None = None,
) -> FerretDB:
    """The FerretDB that SMS_OUTBOX_FERRETDB_BACKEND chooses, built or installed if need be.

    documentdb (the default) is FerretDB 2 on PostgreSQL 15 with DocumentDB; postgresql and
    sqlite are FerretDB 1.x on those backends. With `admin_password`, FerretDB 2 runs with
    authentication on: PostgreSQL's `postgres` user gets that password, and every client must
    log in as a PostgreSQL user (FerretDB checks the password against PostgreSQL's).
    """
    choice = env.get(BACKEND_ENV, "") or "documentdb"
    if admin_password is not None:
        choice = "documentdb"
    common = [
        f"--listen-addr=127.0.0.1:{port}",
        "--telemetry=disable",
        # Without this FerretDB listens on 8088 for its debug handlers.
        "--debug-addr=-",
    ]
    data_dir = workdir / "data"
    if choice == "documentdb":
        binary = _binary(workdir, env, DOCUMENTDB_INSTALL_SCRIPT, DOCUMENTDB_FERRETDB)
        setup = ["CREATE EXTENSION IF NOT EXISTS documentdb CASCADE"]
        if admin_password is not None:
            setup.append(f"ALTER USER {POSTGRES_USER} PASSWORD '{admin_password}'")
        postgres = PostgresCluster(
            DOCUMENTDB_POSTGRES_BIN, workdir, postgres_port, DOCUMENTDB_SETTINGS, setup
        )
        argv = [
            str(binary),
            *common,
            f"--postgresql-url={postgres.url}",
            "--no-auth" if admin_password is None else "--auth",
            f"--state-dir={data_dir}",
            "--log-level=warn",
        ]
        return FerretDB(argv, 2, "documentdb", postgres)
    if choice not in ("postgresql", "sqlite"):
        raise ServerUnavailableError(
            f"{BACKEND_ENV}={choice} is none of documentdb, postgresql (FerretDB 1.x) and sqlite"
        )
    binary = _binary(workdir, env, FERRETDB1_INSTALL_SCRIPT, FERRETDB1)
    # Without --state-dir=- FerretDB 1.x writes state.json to the working directory.
    argv = [str(binary), *common, "--state-dir=-"]
    if choice == "sqlite":
        argv += ["--handler=sqlite", f"--sqlite-url=file:{quote(str(data_dir.resolve()))}/"]
        return FerretDB(argv, 1, "sqlite", None)
    postgres = PostgresCluster(_postgres1_bin(workdir, env), workdir, postgres_port)
    argv += ["--handler=postgresql", f"--postgresql-url={postgres.url}"]
    return FerretDB(argv, 1, "postgresql", postgres)


def _postgres1_bin(workdir: Path, env: Mapping[str, str]) -> Path:
    """The PostgreSQL bin directory for FerretDB 1.x, installed first where the suite can."""
    bin_dir = find_bin_dir(env)
    if bin_dir is None:
        _install(POSTGRES_INSTALL_SCRIPT, [], workdir / "install-postgresql.log", env)
        bin_dir = find_bin_dir(env)
    if bin_dir is None:
        raise ServerUnavailableError(
            f"{BACKEND_ENV}=postgresql but there is no initdb and pg_ctl on PATH or in "
            f"{DEBIAN_POSTGRES_BINS}/*/bin; install them with {POSTGRES_INSTALL_SCRIPT}"
        )
    return bin_dir


def _binary(workdir: Path, env: Mapping[str, str], script: Path, default: Path) -> Path:
    """SMS_OUTBOX_FERRETDB if set, else `default` after `script` has built it (a no-op if built)."""
    configured = env.get(BINARY_ENV)
    if configured:
        binary = Path(configured)
        if not os.access(binary, os.X_OK):
            raise ServerUnavailableError(f"{BINARY_ENV}={configured} is not an executable file")
        return binary
    go = shutil.which("go", path=env.get("PATH")) or (
        str(GO_FALLBACK) if os.access(GO_FALLBACK, os.X_OK) else None
    )
    if go is None and not os.access(default, os.X_OK):
        raise ServerUnavailableError(
            "no MongoDB-compatible server: MONGODB_URI is unset, mongod is not on PATH, "
            f"there is no FerretDB at {default} ({BINARY_ENV} is unset), and there is no Go "
            f"toolchain to build one with {script}"
        )
    child_env = dict(env)
    if go is not None:
        child_env["PATH"] = f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}"
    log_path = workdir / f"{script.stem}.log"
    returncode = _install(script, [str(default.parent.parent)], log_path, child_env)
    if returncode != 0 or not os.access(default, os.X_OK):
        raise ServerUnavailableError(
            f"installing FerretDB with {script} failed (exit {returncode})\n{log_tail(log_path)}"
        )
    return default


def _install(script: Path, args: list[str], log_path: Path, env: Mapping[str, str]) -> int:
    """Run an install script with its output in `log_path`; its exit code.

    The script runs in a session of its own, so that a timeout or an interrupt ends its
    compilers and package managers too, not only the shell.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", str(script), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
        try:
            return process.wait(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ServerUnavailableError(
                f"{script} took over {BUILD_TIMEOUT:.0f}s\n{log_tail(log_path)}"
            ) from None
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
