"""A throw-away PostgreSQL cluster holding FerretDB's data: DocumentDB, or FerretDB 1.x's tables."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from tests.servers.errors import ServerUnavailableError

DEBIAN_POSTGRES_BINS: Final = Path("/usr/lib/postgresql")
POSTGRES_USER: Final = "postgres"
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 30.0


class PostgresCluster:
    """A throw-away PostgreSQL cluster holding FerretDB's data.

    `settings` go into postgresql.conf when the cluster is created (values as PostgreSQL reads
    them, strings quoted); `setup_sql` runs once, the first time the cluster has started.
    """

    def __init__(
        self,
        bin_dir: Path,
        workdir: Path,
        port: int,
        settings: Mapping[str, str] | None = None,
        setup_sql: Sequence[str] = (),
    ) -> None:
        self.url = f"postgres://{POSTGRES_USER}@127.0.0.1:{port}/postgres"
        self.log_path = workdir / "postgresql.log"
        self._bin_dir = bin_dir
        self._workdir = workdir
        self._port = port
        self._settings = dict(settings or {})
        self._setup_sql = list(setup_sql)
        self._set_up = False
        self._root: Path | None = None
        self._running = False
        # PostgreSQL refuses to run as root; as root, run it as the user the package created.
        self._as_user = ["runuser", "-u", POSTGRES_USER, "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        """Create the cluster on first use and start it; return once it accepts connections."""
        if self._running:
            return
        data = self._data_dir()
        if not (data / "PG_VERSION").exists():
            initdb = ["-D", str(data), "-A", "trust", "-U", POSTGRES_USER, "-E", "UTF8"]
            self._run("initdb", *initdb, "--locale=C", "--no-sync")
            with (data / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{name} = {value}\n" for name, value in self._settings.items())
        # Unix sockets off (-k ''): FerretDB uses TCP, and a deep workdir overflows sun_path.
        options = (
            f"-p {self._port} -k '' -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        timeout = str(int(START_TIMEOUT))
        self._run("pg_ctl", "-D", str(data), "-o", options, "-w", "-t", timeout, "start")
        self._running = True
        if not self._set_up:
            for sql in self._setup_sql:
                self.psql(sql)
            self._set_up = True

    def psql(self, sql: str) -> str:
        """Run SQL in the `postgres` database and return psql's unaligned, tuples-only output."""
        args = ["-h", "127.0.0.1", "-p", str(self._port), "-U", POSTGRES_USER, "-d", "postgres"]
        argv = [str(self._bin_dir / "psql"), *args, "-X", "-qAt", "-v", "ON_ERROR_STOP=1"]
        try:
            result = subprocess.run(
                [*argv, "-c", sql],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
                timeout=START_TIMEOUT + 10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ServerUnavailableError(f"psql {sql!r} did not finish in time") from None
        except OSError as exc:
            raise ServerUnavailableError(f"cannot run {argv[0]}: {exc}") from exc
        if result.returncode != 0:
            raise ServerUnavailableError(
                f"psql {sql!r} failed with exit code {result.returncode}: {result.stderr.strip()}"
            )
        return result.stdout

    def close(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster."""
        root, self._root = self._root, None
        self._running = False
        if root is None:
            return
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(shutil.rmtree, root, ignore_errors=True)
            # The pid file outlives a start that timed out, whose server may still come up.
            if (root / "data" / "postmaster.pid").exists():
                timeout = str(int(STOP_TIMEOUT))
                self._run(
                    "pg_ctl", "-D", str(root / "data"), "-m", "fast", "-w", "-t", timeout, "stop"
                )

    def _data_dir(self) -> Path:
        if self._root is None:
            if self._as_user:
                # The postgres user cannot reach root's workdir (pytest makes it 0700).
                self._root = Path(tempfile.mkdtemp(prefix="sms-outbox-postgresql-"))
                try:
                    shutil.chown(self._root, POSTGRES_USER, POSTGRES_USER)
                except LookupError as exc:
                    raise ServerUnavailableError(
                        f"running as root but there is no {POSTGRES_USER!r} user to run "
                        f"PostgreSQL as: {exc}"
                    ) from exc
            else:
                self._root = Path(tempfile.mkdtemp(prefix="postgresql-", dir=self._workdir))
        return self._root / "data"

    def _run(self, program: str, *args: str) -> None:
        argv = [*self._as_user, str(self._bin_dir / program), *args]
        # The server inherits this file as its stdout and stderr, so its log lands in the workdir
        # even when the postgres user could not open a path there.
        with self.log_path.open("ab") as log:
            try:
                result = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=START_TIMEOUT + 10,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise ServerUnavailableError(f"{argv!r} did not finish in time") from None
            except OSError as exc:
                raise ServerUnavailableError(f"cannot run {argv!r}: {exc}") from exc
        if result.returncode != 0:
            raise ServerUnavailableError(f"{argv!r} failed with exit code {result.returncode}")


def find_bin_dir(env: Mapping[str, str]) -> Path | None:
    """Where initdb and pg_ctl are: PATH first, then Debian's newest /usr/lib/postgresql/N/bin."""
    initdb = shutil.which("initdb", path=env.get("PATH"))
    candidates = [Path(initdb).resolve().parent] if initdb else []
    debian = sorted(
        DEBIAN_POSTGRES_BINS.glob("*/bin/initdb"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
        reverse=True,
    )
    candidates += [path.parent for path in debian]
    for bin_dir in candidates:
        if all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bin_dir
    return None
