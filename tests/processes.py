"""Stopping the processes a test starts, on every path: SIGTERM first, then SIGKILL."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterable

GRACE_SECONDS = 30.0


def stop(process: subprocess.Popen[str], timeout: float = GRACE_SECONDS) -> tuple[str, str]:
    """SIGTERM `process` and collect its output; if it has not exited after `timeout` seconds,
    SIGKILL it and fail."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(
            f"process {process.pid} ignored SIGTERM for {timeout:g} s and was killed"
        ) from None


def reap(processes: Iterable[subprocess.Popen[str]], timeout: float = GRACE_SECONDS) -> None:
    """Stop whichever of `processes` still run, together: SIGTERM, then SIGKILL after
    `timeout` seconds. For teardown, so it raises nothing."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
