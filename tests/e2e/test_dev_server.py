"""`scripts/dev-server`, the newcomer's throw-away server: it starts on the port asked for,
prints the URI, serves until Ctrl-C and then leaves no server process behind."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.e2e.observe import free_port, wait_for
from tests.processes import stop

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dev-server"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """The lines printed up to the one holding `marker`."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} from dev-server: {lines}")


@pytest.mark.slow
def test_the_dev_server_serves_on_its_port_until_ctrl_c_and_stops_everything() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        # The first run may build the server; the suite's fixture builds it first in CI.
        printed = _read_until(process, "Stop with Ctrl-C", timeout=900)
        uri = f"mongodb://127.0.0.1:{port}"
        assert f"export SMS_OUTBOX_MONGODB__URI={uri}" in printed
        postgres = re.search(r"PostgreSQL at \S+:(\d+)/", "\n".join(printed))
        client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
        with client:
            client["try"]["outbox"].insert_one({"hello": "world"})
            assert client["try"]["outbox"].count_documents({}) == 1
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            stop(process)
    assert process.returncode == 0, err
    assert "dev-server: stopped" in out
    wait_for(lambda: not _listening(port) or None, "the server's port to close", timeout=10)
    if postgres is not None:  # FerretDB's PostgreSQL is stopped too, not left running
        ports = int(postgres.group(1))
        wait_for(lambda: not _listening(ports) or None, "PostgreSQL to stop", timeout=10)


def test_the_dev_server_says_so_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"something already listens on 127.0.0.1:{port}" in result.stderr
