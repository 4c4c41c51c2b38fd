"""Health counts failed cycles: /healthz fails after several in a row or when none completes for
a while, and a cron run that gives up names what failed."""

from __future__ import annotations

from datetime import timedelta

from pymongo.database import Database

from jobs import health
from jobs.clock import SystemClock
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.memory import MemoryOutbox
from jobs.errors import StoreRefused
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc
from scheduler.daemon import Daemon
from tests.unit.fakes import CountingPacer, FakeProvider

REFUSAL = "Failed to apply $inc operations to current value ((NumberLong)9223372036854775807)"


def test_liveness_fails_after_the_configured_failed_cycles_in_a_row() -> None:
    beat = health.Heartbeat(now=0.0)
    limits = health.Limits(failed_cycles=3, stalled_seconds=600)
    for at in (1.0, 2.0):
        beat.begin(at)
        beat.end(at, failure="the database refused an operation (code 2)")
    assert health.liveness(beat, 2.5, poll_seconds=1, lease_seconds=120, limits=limits).ok

    beat.begin(3.0)
    beat.end(3.0, failure="the database refused an operation (code 2)")
    verdict = health.liveness(beat, 3.5, poll_seconds=1, lease_seconds=120, limits=limits)

    assert not verdict.ok
    assert "3 cycles in a row failed" in verdict.detail and "code 2" in verdict.detail
    beat.begin(4.0)
    beat.end(4.0)
    assert health.liveness(beat, 4.5, poll_seconds=1, lease_seconds=120, limits=limits).ok


def test_liveness_fails_when_no_cycle_has_completed_for_the_configured_while() -> None:
    beat = health.Heartbeat(now=0.0)
    limits = health.Limits(failed_cycles=1000, stalled_seconds=60)
    for at in range(1, 62):  # cycles keep ending, every one of them failing
        beat.begin(float(at))
        beat.end(float(at), failure="KeyError: 'to'")

    verdict = health.liveness(beat, 61.5, poll_seconds=1, lease_seconds=120, limits=limits)

    assert not verdict.ok
    assert "no cycle completed for 61.5 s" in verdict.detail and "KeyError" in verdict.detail


class RefusingOutbox(MemoryOutbox):
    """A store whose claim the server refuses every time, as a poison nobody isolated would."""

    def claim(self, limit: int, lease: timedelta) -> list[Doc]:
        raise StoreRefused(f"OperationFailure: {REFUSAL}", 2, {"errmsg": REFUSAL})


def test_a_cron_run_that_gives_up_names_the_refusal_not_the_database(db: Database[Doc]) -> None:
    clock = SystemClock()
    dispatcher = Dispatcher(
        RefusingOutbox(clock),
        Directory(db),
        FakeProvider(),
        CountingPacer(),
        clock,
        DispatchConfig(),
    )
    daemon = Daemon(dispatcher, poll_seconds=0.01, until_idle=True)

    daemon.run()

    assert daemon.gave_up
    assert daemon.failure is not None
    assert "refused" in daemon.failure and "9223372036854775807" in daemon.failure
    assert "unavailable" not in daemon.failure
    failed, cause, _ = daemon.heartbeat.failures()
    assert failed == Daemon.GIVE_UP_AFTER and cause == daemon.failure


def test_cycles_that_wait_for_an_unreachable_database_leave_the_daemon_alive() -> None:
    beat = health.Heartbeat(now=0.0)
    limits = health.Limits(failed_cycles=3, stalled_seconds=60)
    for at in range(1, 120):
        beat.begin(float(at))
        beat.end(float(at), failure="database unavailable", outage=True)

    assert health.liveness(beat, 119.5, poll_seconds=1, lease_seconds=120, limits=limits).ok
