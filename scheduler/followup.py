"""Wiring of the follow-up steps from the settings: receipts from the inbox, polling for the
missing ones, reconciliation, inbound texts and the opt-out watch."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from jobs.clock import Clock
from jobs.dispatch.dispatcher import Dispatcher
from jobs.dispatch.followup import Check, Followup
from jobs.dispatch.inbound import InboundHandler, ReplyTexts
from jobs.dispatch.optouts import OptOutWatch
from jobs.dispatch.receipts import ReceiptConfig
from jobs.dispatch.reconcile import ReconcileConfig, Reconciler
from jobs.errors import ConfigError
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.directory import Directory
from jobs.mongo.inbound import InboundLog
from jobs.mongo.inbox import Inbox
from jobs.mongo.store import OutboxStore
from jobs.mongo.tickets import SendTickets
from jobs.pacing import SlidingWindowPacer
from jobs.ports import SendGuard
from jobs.records import FlowrouteRecords, MessageRecords
from jobs.rules import signing
from jobs.rules.confirm import ConfirmConfig
from scheduler.optin import build_keywords
from scheduler.settings import Settings


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
        checks.append(_reconciler(settings, store, directory, delivery, records, clock))
    inbound = InboundLog(store.db)
    checks.append(OptOutWatch(inbound, clock, settings.replies.optout_warn_rate))
    handler = _inbound_handler(settings, dispatcher, store, directory, inbound, config.confirm)
    return Followup(
        delivery, Inbox(store.db), clock, config, records, inbound=handler, checks=checks,
        inbound_log=inbound,
    )  # fmt: skip


def _reconciler(
    settings: Settings,
    store: OutboxStore,
    directory: Directory,
    delivery: DeliveryStore,
    records: MessageRecords,
    clock: Clock,
) -> Reconciler:
    """The check that settles sends whose outcome is unknown, from Flowroute's records."""
    rc = settings.receipts
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
        return store.spent.proven_not_sent(signing.signed_id(doc) or str(doc["_id"]), doc["_id"])

    def spent(doc: dict[str, Any]) -> dict[str, Any] | None:
        return store.spent.record_of(signing.signed_id(doc) or str(doc["_id"]), doc["_id"])

    return Reconciler(delivery, guard, spans, release, directory, records, clock, reconcile, spent)


def _inbound_handler(
    settings: Settings,
    dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    inbound: InboundLog,
    confirm: ConfirmConfig,
) -> InboundHandler:
    """The step that answers STOP, HELP and START and takes JOIN/YES to the sign-up service."""
    rs = settings.replies
    texts = ReplyTexts(
        rs.program, rs.help_text, rs.stop_text, rs.start_text,
        timedelta(hours=rs.help_interval_hours),
    )  # fmt: skip
    joins = build_keywords(settings, store.db, dispatcher.clock)
    return InboundHandler(
        store,
        directory,
        inbound,
        dispatcher.clock,
        texts,
        dispatcher.signatures,
        config=confirm,
        optin=joins,
    )


class _FirstUseGuard:
    """The store's send guard, looked up when first used. Without send tickets reconciliation
    falls back to when the message became unknown."""

    def __init__(self, store: OutboxStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store.guard, name)
