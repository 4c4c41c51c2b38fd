"""The processes a test starts are stopped on every path, even one that ignores SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.processes import reap, stop

STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(600)"
)
POLITE = "import time; print('ready', flush=True); time.sleep(600)"


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:  # whatever the test did, nothing outlives it
        if process.poll() is None:
            process.kill()
            process.wait()


def start(code: str, into: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    into.append(process)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def test_stop_ends_a_process_with_sigterm(started: list[subprocess.Popen[str]]) -> None:
    process = start(POLITE, started)

    stop(process, timeout=60)

    assert process.returncode == -15


def test_stop_kills_a_process_that_ignores_sigterm_and_fails(
    started: list[subprocess.Popen[str]],
) -> None:
    process = start(STUBBORN, started)

    with pytest.raises(AssertionError, match="ignored SIGTERM"):
        stop(process, timeout=0.5)

    assert process.returncode == -9


def test_reap_stops_every_process_still_running(started: list[subprocess.Popen[str]]) -> None:
    polite, stubborn = start(POLITE, started), start(STUBBORN, started)

    reap([polite, stubborn], timeout=0.5)

    assert (polite.returncode, stubborn.returncode) == (-15, -9)
