"""The daemon: APScheduler runs the send cycle until SIGTERM/SIGINT, then stops gracefully."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, cast

import requests
import requests.adapters
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from jobs import metrics
from jobs.clock import Clock, SystemClock
from jobs.dispatch.account_gate import AccountGate
from jobs.dispatch.dispatcher import CycleReport, DispatchConfig, Dispatcher, summary
from jobs.dispatch.followup import Check, Followup
from jobs.dispatch.inbound import InboundHandler, ReplyTexts
from jobs.dispatch.optouts import OptOutWatch
from jobs.dispatch.receipts import ReceiptConfig
from jobs.dispatch.reconcile import ReconcileConfig, Reconciler
from jobs.errors import ConfigError, StoreError, StoreUnavailable
from jobs.flowroute import FlowrouteClient, SmsProvider
from jobs.health import Heartbeat, Limits
from jobs.keys import Signatures
from jobs.mongo import failures
from jobs.mongo.account import AccountHold
from jobs.mongo.connection import Db
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.directory import Directory
from jobs.mongo.fleet_pacing import FleetPacer
from jobs.mongo.inbound import InboundLog
from jobs.mongo.inbox import Inbox
from jobs.mongo.store import OutboxStore
from jobs.mongo.tickets import SendTickets
from jobs.pacing import GatedProvider, Pacer, SlidingWindowPacer
from jobs.ports import SendGuard
from jobs.records import FlowrouteRecords, MessageRecords
from jobs.rules import signing
from jobs.rules.confirm import ConfirmConfig
from jobs.rules.slots import SlotPlan, account_id
from scheduler.optin import build_keywords
from scheduler.settings import Settings, keyring

log = structlog.get_logger("sms_outbox.daemon")
# Fleet pacing hands out a slot this early, so the writes between pacing and sending (renewal,
# send ticket) happen before the slot rather than delaying the request past it.
SEND_LEAD_SECONDS = 0.1


def build_dispatcher(
    settings: Settings,
    db: Db,
    provider: SmsProvider | None = None,
    clock: Clock | None = None,
) -> Dispatcher:
    """Wire the send cycle from settings; `provider` defaults to the Flowroute HTTP client."""
    clock = clock or SystemClock()
    concurrency = settings.dispatch.sends_in_flight(settings.flowroute.rate_per_second)
    if provider is None:
        access, secret = settings.require_flowroute()
        fr = settings.flowroute
        provider = FlowrouteClient(
            fr.base_url, access, secret, fr.timeout_seconds, dlr_callback=settings.dlr_callback(),
            session=pooled_session(concurrency),
        )  # fmt: skip
    config = DispatchConfig(
        batch_size=settings.dispatch.batch_size,
        lease_seconds=settings.dispatch.lease_seconds,
        max_attempts=settings.dispatch.max_attempts,
        max_segments=settings.dispatch.max_segments,
        quiet_hours=settings.quiet_hours.window(),
        concurrency=concurrency,
    )
    signatures = None
    if settings.security.require_signatures:
        signatures = Signatures(keyring(settings))
        signatures.keys.daemon_key()  # fail at start-up, not mid-broadcast, if it cannot be made
    else:
        log.warning(
            "security.signatures_off",
            detail="any database writer can get messages sent; rely on database roles",
        )
    probe = timedelta(seconds=settings.flowroute.hold_probe_seconds)
    probe_cap = timedelta(seconds=settings.flowroute.hold_probe_max_seconds)
    # Latency is the request's own: measured inside the gate that holds it until its slot.
    provider = metrics.MeteredProvider(provider, clock)
    pacer = build_pacer(settings, db, clock, concurrency)
    if isinstance(pacer, FleetPacer) or (isinstance(pacer, SlidingWindowPacer) and pacer.early):
        provider = GatedProvider(provider, pacer)
    return Dispatcher(
        OutboxStore(db, clock, settings.mongodb.send_guard, sealer=signatures),
        Directory(db),
        provider,
        metrics.MeteredPacer(pacer, clock),
        clock,
        config,
        signatures,
        AccountGate(AccountHold(db, clock, probe, probe_cap), clock),
    )


def pooled_session(connections: int) -> requests.Session:
    """An HTTP session that keeps a connection open for each send in flight."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def build_pacer(settings: Settings, db: Db, clock: Clock, concurrency: int = 1) -> Pacer:
    """Fleet pacing shares the account's limit through the database; local pacing does not.
    With several sends in flight, local pacing too holds each request until its own time."""
    rate = settings.flowroute.rate_per_second
    if not rate or settings.dispatch.pacing == "local":
        early = SEND_LEAD_SECONDS if rate and concurrency > 1 else 0.0
        return SlidingWindowPacer(rate or None, clock, early=early)
    access = settings.flowroute.access_key
    account = account_id(settings.flowroute.base_url, access.get_secret_value() if access else "")
    plan = SlotPlan(rate, settings.dispatch.pacing_margin_ms / 1000)
    return FleetPacer(db, account, plan, clock, early=SEND_LEAD_SECONDS)


def start_up(dispatcher: Dispatcher) -> None:
    """What a daemon does once before its first cycle: indexes, and the fleet pacer's indexes
    and first reading of the server's clock."""
    dispatcher.store.ensure_indexes()
    dispatcher.directory.ensure_indexes()
    pacer = dispatcher.pacer
    if isinstance(pacer, metrics.MeteredPacer):
        pacer = pacer.pacer
    if isinstance(pacer, FleetPacer):
        pacer.prepare()


def build_followup(
    settings: Settings,
    dispatcher: Dispatcher,
    records: MessageRecords | None = None,
) -> Followup:
    """Wire the follow-up steps: receipts from the inbox, polling and reconciliation.

    Record lookups have their own pacer: Flowroute counts its 5/s per endpoint, so lookups never
    take a send's place, and `receipts.lookups_per_second` keeps them a small, separate budget.
    """
    clock = dispatcher.clock
    rc = settings.receipts
    if records is None and settings.flowroute.access_key is not None:
        access, secret = settings.require_flowroute()
        records = FlowrouteRecords(
            settings.flowroute.base_url,
            access,
            secret,
            settings.flowroute.timeout_seconds,
            SlidingWindowPacer(rc.lookups_per_second, clock),
        )
    config = ReceiptConfig(
        poll_after=timedelta(seconds=rc.poll_after_seconds),
        poll_horizon=timedelta(seconds=rc.poll_horizon_seconds),
        batch_size=rc.batch_size,
        # About a second of the lookup pacer per cycle goes to confirming callbacks.
        confirm=ConfirmConfig(lookups_per_cycle=max(1, int(rc.lookups_per_second))),
    )
    store, directory = dispatcher.store, dispatcher.directory
    if not isinstance(store, OutboxStore) or not isinstance(directory, Directory):
        raise ConfigError("the follow-up steps run on the MongoDB store only")
    delivery = DeliveryStore(store, directory)
    checks: list[Check] = []
    if records is not None:
        reconcile = ReconcileConfig(
            after=timedelta(seconds=rc.reconcile_after_seconds),
            clock_skew=timedelta(seconds=rc.clock_skew_seconds),
            request_timeout=timedelta(seconds=settings.flowroute.timeout_seconds),
            resend_within=timedelta(seconds=rc.resend_within_seconds),
            batch_size=rc.batch_size,
        )
        # With send_guard "auto" the guard is chosen by asking the server, so it is looked up
        # on first use, not here: the daemon starts while the database is still down.
        guard = cast(SendGuard, _FirstUseGuard(store))

        def spans(message_id: Any) -> list[tuple[datetime, datetime | None]]:
            chosen = store.guard
            return chosen.in_doubt_spans(message_id) if isinstance(chosen, SendTickets) else []

        def release(doc: dict[str, Any]) -> bool:
            return store.spent.proven_not_sent(
                signing.signed_id(doc) or str(doc["_id"]), doc["_id"]
            )

        def spent(doc: dict[str, Any]) -> dict[str, Any] | None:
            return store.spent.record_of(signing.signed_id(doc) or str(doc["_id"]), doc["_id"])

        checks.append(
            Reconciler(delivery, guard, spans, release, directory, records, clock, reconcile, spent)
        )
    inbound = InboundLog(store.db)
    checks.append(OptOutWatch(inbound, clock, settings.replies.optout_warn_rate))
    rs = settings.replies
    texts = ReplyTexts(
        rs.program, rs.help_text, rs.stop_text, rs.start_text,
        timedelta(hours=rs.help_interval_hours),
    )  # fmt: skip
    joins = build_keywords(settings, store.db, clock)
    handler = InboundHandler(
        store,
        directory,
        inbound,
        clock,
        texts,
        dispatcher.signatures,
        config=config.confirm,
        optin=joins,
    )
    return Followup(
        delivery, Inbox(store.db), clock, config, records, inbound=handler, checks=checks,
        inbound_log=inbound,
    )  # fmt: skip


class _FirstUseGuard:
    """The store's send guard, looked up when first used. Without send tickets reconciliation
    falls back to when the message became unknown."""

    def __init__(self, store: OutboxStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store.guard, name)


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


def describe(settings: Settings) -> dict[str, Any]:
    """Settings worth logging at start-up (no secrets)."""
    return {
        "database": settings.mongodb.database,
        "flowroute": settings.flowroute.base_url,
        "rate_per_second": settings.flowroute.rate_per_second,
        "pacing": settings.dispatch.pacing,
        "batch_size": settings.dispatch.batch_size,
        "concurrency": settings.dispatch.sends_in_flight(settings.flowroute.rate_per_second),
    }
