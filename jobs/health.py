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


@dataclass(frozen=True)
class Limits:
    """When a daemon whose cycles keep failing stops being healthy (`[metrics]` settings):
    after `failed_cycles` failed cycles in a row, or when no cycle has completed for
    `stalled_seconds`. A failed cycle ends, but completes nothing."""

    failed_cycles: int = 3
    stalled_seconds: float = 300.0


class Heartbeat:
    """The cycle's pulse: when the running cycle began, when the last one ended (monotonic),
    and how many in a row failed, why, and when one last completed."""

    def __init__(self, now: float) -> None:
        self._lock = threading.Lock()
        self._started: float | None = None
        self._finished = now  # the daemon's start counts as a finished cycle
        self._completed = now
        self._failures = 0
        self._cause: str | None = None

    def begin(self, now: float) -> None:
        with self._lock:
            self._started = now

    def end(self, now: float, failure: str | None = None, *, outage: bool = False) -> None:
        """A cycle ended: completed, or failed with `failure` saying why. One that only waited
        for an unreachable database (`outage`) counts as neither: the daemon is alive and
        /readyz says what is wrong."""
        with self._lock:
            self._started, self._finished = None, now
            if outage:
                self._completed = now
            elif failure is None:
                self._completed, self._failures, self._cause = now, 0, None
            else:
                self._failures += 1
                self._cause = failure

    def snapshot(self) -> tuple[float | None, float]:
        """(start of the running cycle or None, end of the last finished one)."""
        with self._lock:
            return self._started, self._finished

    def failures(self) -> tuple[int, str | None, float]:
        """(failed cycles in a row, why the last one failed, end of the last completed one)."""
        with self._lock:
            return self._failures, self._cause, self._completed


def liveness(
    heartbeat: Heartbeat,
    now: float,
    poll_seconds: float,
    lease_seconds: float,
    limits: Limits | None = None,
) -> Verdict:
    """Alive while a cycle ended recently, or the running one is younger than a lease, and
    cycles still complete: not `limits.failed_cycles` failed in a row, nor none completed for
    `limits.stalled_seconds`."""
    limits = limits or Limits()
    started, finished = heartbeat.snapshot()
    failed, cause, completed = heartbeat.failures()
    if started is not None:
        running = now - started
        if running >= lease_seconds:
            return Verdict(False, f"cycle running for {running:.1f} s, longer than the lease")
    if failed >= limits.failed_cycles:
        return Verdict(False, f"{failed} cycles in a row failed; the last: {cause}")
    if started is None and now - completed > limits.stalled_seconds:
        why = f"; the last failure: {cause}" if cause else ""
        return Verdict(False, f"no cycle completed for {now - completed:.1f} s{why}")
    if started is not None:
        return Verdict(True, f"cycle running for {now - started:.1f} s")
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
