"""Health: whether the daemon's cycle is alive, and whether it is ready to send."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Between two cycles the daemon waits one poll interval; this many intervals without a finished
# cycle (and no cycle running) means the scheduler has stopped calling it.
STUCK_AFTER_POLLS = 10
STUCK_FLOOR_SECONDS = 15.0

ACTIVE, HELD, PAUSED = "active", "held", "paused"


class AccountStatus(Protocol):
    """The Flowroute account as the daemon knows it: `active`, `held` (refused our credentials,
    nothing may be sent) or `paused` (sending deliberately suspended)."""

    def state(self) -> str: ...


class AlwaysActive:
    """Until the daemon learns account faults, the account is taken to be active."""

    def state(self) -> str:
        return ACTIVE


@dataclass(frozen=True)
class Verdict:
    """An answer for a health endpoint: `ok`, and a sentence saying why."""

    ok: bool
    detail: str


class Heartbeat:
    """The cycle's pulse: when the running cycle began and when the last one ended (monotonic)."""

    def __init__(self, now: float) -> None:
        self._lock = threading.Lock()
        self._started: float | None = None
        self._finished = now  # the daemon's start counts as a finished cycle

    def begin(self, now: float) -> None:
        with self._lock:
            self._started = now

    def end(self, now: float) -> None:
        with self._lock:
            self._started, self._finished = None, now

    def snapshot(self) -> tuple[float | None, float]:
        """(start of the running cycle or None, end of the last finished one)."""
        with self._lock:
            return self._started, self._finished


def liveness(
    heartbeat: Heartbeat, now: float, poll_seconds: float, lease_seconds: float
) -> Verdict:
    """Alive while a cycle ended recently, or the running one is younger than a lease."""
    started, finished = heartbeat.snapshot()
    if started is not None:
        running = now - started
        if running < lease_seconds:
            return Verdict(True, f"cycle running for {running:.1f} s")
        return Verdict(False, f"cycle running for {running:.1f} s, longer than the lease")
    idle = now - finished
    limit = max(STUCK_AFTER_POLLS * poll_seconds, STUCK_FLOOR_SECONDS)
    if idle <= limit:
        return Verdict(True, f"last cycle ended {idle:.1f} s ago")
    return Verdict(False, f"no cycle for {idle:.1f} s (limit {limit:g} s)")


def readiness(ping: Callable[[], object], account: AccountStatus) -> Verdict:
    """Ready when the database answers a ping and the account is not held."""
    try:
        ping()
        state = account.state()
    except Exception as exc:  # whatever the driver raises, the answer is "not ready"
        return Verdict(False, f"database unreachable ({type(exc).__name__})")
    if state == HELD:
        return Verdict(False, "the Flowroute account is held")
    return Verdict(True, f"database reachable; account {state}")
