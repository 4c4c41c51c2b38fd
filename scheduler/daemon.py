"""The daemon: APScheduler runs the send cycle until SIGTERM/SIGINT, then stops gracefully."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from jobs import metrics
from jobs.dispatch.dispatcher import CycleReport, Dispatcher, summary
from jobs.dispatch.followup import Followup
from jobs.errors import StoreError, StoreUnavailable
from jobs.health import Heartbeat, Limits
from jobs.mongo import failures
from jobs.mongo.connection import Db
from scheduler.settings import Settings
from scheduler.wiring import start_up

log = structlog.get_logger("sms_outbox.daemon")

# How often Python hands the interpreter to another thread while sends are in flight.
SWITCH_INTERVAL_SECONDS = 0.001


class Daemon:
    """Runs `Dispatcher.run_once` on an APScheduler interval job, one cycle at a time, and the
    follow-up checks (receipt polling, reconciliation) on an interval job of their own."""

    # In cron mode (`until_idle`), cycles in a row that may fail on the database before the
    # daemon gives up; each waits up to mongodb.timeout_seconds for a server.
    GIVE_UP_AFTER = 3

    def __init__(
        self,
        dispatcher: Dispatcher,
        poll_seconds: float,
        *,
        until_idle: bool = False,
        followup: Followup | None = None,
        check_seconds: float = 30.0,
    ):
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds
        self.until_idle = until_idle
        self.followup = followup
        self.check_seconds = check_seconds
        self.failed_cycles = 0
        self.gave_up = False
        self.failure: str | None = None  # why the last failed cycle failed
        self.scheduler = BlockingScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(2)},
            job_defaults={"max_instances": 1, "misfire_grace_time": None},
        )
        self._cycle_lock = threading.Lock()
        self._cycles = 0
        self._check_lock = threading.Lock()
        self.heartbeat = Heartbeat(dispatcher.clock.monotonic())
        self._ready = False
        self._db_down = False

    def run(self) -> None:
        """Block until stopped by a signal (or, with `until_idle`, until nothing is due)."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        self._schedule(0.0)
        if self.followup is not None and not self.until_idle:
            first = datetime.now(UTC) + timedelta(seconds=self.check_seconds)
            self.scheduler.add_job(
                self._check, "interval", seconds=self.check_seconds, id="check",
                next_run_time=first,
            )  # fmt: skip
        log.info("daemon.started", poll_seconds=self.poll_seconds, until_idle=self.until_idle)
        try:
            self.scheduler.start()
        finally:
            # The scheduler returns at once; the cycle that was running finishes its send first,
            # and every send in flight finishes and is recorded. A second SIGTERM or Ctrl-C
            # meanwhile is only logged: the handlers are given back once nothing is in flight.
            try:
                with self._cycle_lock, self._check_lock:
                    self._finish()
                    log.info("daemon.stopped")
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def stop(self) -> None:
        """No new claims; the running cycle finishes its current send and releases the rest."""
        self.dispatcher.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _finish(self) -> None:
        try:
            self.dispatcher.finish()
        except StoreError as exc:
            log.error("daemon.finish_failed", error=type(exc).__name__, detail=str(exc))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.dispatcher.stopping:
            log.info("daemon.still_stopping", signal=signal.Signals(signum).name)
            return
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        self.stop()

    def _schedule(self, delay: float) -> None:
        """The next cycle is a one-off job, so cycles never overlap however long one takes."""
        if self.dispatcher.stopping:
            return
        when = datetime.now(UTC) + timedelta(seconds=delay)
        # Each cycle is a job of its own: the one scheduling it is still running, and a job
        # that shared its id would be skipped as a second instance, ending the cycles for good.
        self._cycles += 1
        self.scheduler.add_job(self._tick, "date", run_date=when, id=f"cycle-{self._cycles}")

    def _check(self) -> None:
        if self.dispatcher.stopping or self.followup is None:
            return
        with self._check_lock:
            try:
                self.followup.check()
            except StoreError as exc:
                log.error("check.failed", error=type(exc).__name__, detail=str(exc))
            except Exception:
                # As for a cycle: a bug is logged and the next check runs as usual.
                log.exception("check.crashed")

    def _tick(self) -> None:
        delay = self.poll_seconds
        with self._cycle_lock:
            try:
                report = self._cycle()
            except StoreUnavailable as exc:
                if not self._db_down:
                    log.error("database.unavailable", error=str(exc), detail=str(exc.__cause__))
                    metrics.database_unavailable("cycle")
                self._db_down = True
                if self._give_up():
                    return
            except StoreError as exc:
                log.error("cycle.failed", error=type(exc).__name__, detail=str(exc))
                if self._give_up():
                    return
            except Exception:
                # A bug must not stop the daemon: the messages it held are recovered by lease.
                # It still counts as a failed cycle: one that keeps crashing is not healthy.
                log.exception("cycle.crashed")
                if self._give_up():
                    return
            else:
                self.failed_cycles = 0
                if report.idle and self.until_idle and self.dispatcher.store.fanning_out():
                    # Another daemon is making messages of a broadcast: they will be due soon.
                    log.info("daemon.waiting", reason="broadcast_fanning_out")
                elif report.idle and self.until_idle:
                    log.info("daemon.idle")
                    self.stop()
                    return
                if report.claimed or report.admitted or report.recovered:
                    delay = 0.0  # there may be more: go again at once
        self._schedule(delay)

    def _give_up(self) -> bool:
        """In cron mode a database that stays unusable ends the run instead of waiting forever."""
        self.failed_cycles += 1
        if not self.until_idle or self.failed_cycles < self.GIVE_UP_AFTER:
            return False
        log.error("daemon.gave_up", failed_cycles=self.failed_cycles, cause=self.failure)
        self.gave_up = True
        self.stop()
        return True

    def _cycle(self) -> CycleReport:
        clock = self.dispatcher.clock
        self.heartbeat.begin(clock.monotonic())
        try:
            report = self._run_once()
        except Exception as exc:
            self.failure = cause(exc)
            outage = isinstance(exc, StoreUnavailable)
            self.heartbeat.end(clock.monotonic(), failure=self.failure, outage=outage)
            raise
        self.heartbeat.end(clock.monotonic())
        return report

    def _run_once(self) -> CycleReport:
        if not self._ready:
            start_up(self.dispatcher)
            if self.followup is not None:
                self.followup.ensure_indexes()
            self._ready = True
        applied = 0
        if self.followup is not None:
            # Inbound messages, then receipts: applied before the send step, so a STOP takes
            # effect even in a cycle whose sending fails, and a reply queued here goes out now.
            applied = self.followup.apply_inbox()
        report = self.dispatcher.run_once()
        report.admitted += applied
        if self._db_down:
            log.info("database.recovered")
            self._db_down = False
        if report.claimed or report.admitted:
            log.info("cycle.done", **summary(report))
        return report


def cause(exc: BaseException) -> str:
    """Why a cycle failed, in one line: the setting or server at fault for a database error
    (secrets removed), the error itself for anything else."""
    failure = failures.explain(exc)
    if failure is not None:
        return failure.line
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def run_daemon(
    dispatcher: Dispatcher,
    settings: Settings,
    *,
    until_idle: bool,
    followup: Followup | None = None,
    db: Db | None = None,
) -> str | None:
    """Run a daemon with the poll and check intervals from settings, serving metrics if set
    (with `db`); in cron mode, why it gave up when its cycles kept failing, else None."""
    if dispatcher.config.concurrency > 1:
        # Send workers wake at their pacing slots and need the interpreter at once: a request
        # that leaves later than its slot's margin can crowd Flowroute's window. Python hands
        # the interpreter over every 5 ms by default; 1 ms keeps a woken worker's wait short
        # while the cycle and the other workers run.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    daemon = Daemon(
        dispatcher,
        settings.dispatch.poll_seconds,
        until_idle=until_idle,
        followup=followup,
        check_seconds=settings.receipts.check_seconds,
    )
    served = None
    if settings.metrics.listen and db is not None:
        from scheduler.surfaces import exporter

        served = exporter.start(
            settings.metrics.listen,
            db,
            dispatcher.clock,
            daemon.heartbeat,
            (settings.dispatch.poll_seconds, settings.dispatch.lease_seconds),
            limits=Limits(
                settings.metrics.unhealthy_after_failed_cycles,
                settings.metrics.unhealthy_after_seconds,
            ),
        )
    try:
        daemon.run()
    finally:
        if served is not None:
            served.close()
            metrics.install(None)
    if not daemon.gave_up:
        return None
    why = daemon.failure or "no cause recorded"
    uri = settings.mongodb.uri.get_secret_value()
    return why.replace(uri, "mongodb.uri") if uri else why
