"""Wiring of the send cycle from the settings: the Flowroute client, the pacer, the store and
the dispatcher that runs them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import requests
import requests.adapters
import structlog

from jobs import metrics
from jobs.clock import Clock, SystemClock
from jobs.dispatch.account_gate import AccountGate
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.flowroute import FlowrouteClient, SmsProvider
from jobs.keys import Signatures
from jobs.mongo.account import AccountHold
from jobs.mongo.connection import Db
from jobs.mongo.directory import Directory
from jobs.mongo.fleet_pacing import FleetPacer
from jobs.mongo.store import OutboxStore
from jobs.pacing import GatedProvider, Pacer, SlidingWindowPacer
from jobs.rules.slots import SlotPlan, account_id
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
    plan = SlotPlan(rate, settings.dispatch.margin_seconds(rate))
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
