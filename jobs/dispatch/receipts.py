"""Receipts: apply those the receiver stored, and look up those that never came."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog

from jobs import metrics
from jobs.clock import Clock
from jobs.dispatch.confirm import Fate, Found, Lookups, Step, tries_of
from jobs.errors import InputError, ProviderError, StoreRefused, document_fault, refusal
from jobs.model import State
from jobs.ports import APPLIED, UNKNOWN_ID, Delivery
from jobs.records import MessageRecords
from jobs.rules import confirm
from jobs.rules.confirm import Agreement, ConfirmConfig
from jobs.rules.outcomes import backoff

log = structlog.get_logger("sms_outbox.receipts")
FINAL_STATES = frozenset({State.DELIVERED, State.UNDELIVERED, State.EXPIRED})


@dataclass(frozen=True)
class ReceiptConfig:
    """The `[receipts]` settings the receipt steps need."""

    poll_after: timedelta = timedelta(minutes=5)
    poll_horizon: timedelta = timedelta(days=2)
    batch_size: int = 50
    # A receipt may arrive before its send is recorded; it waits, backing off, this long.
    unknown_id_retry: timedelta = timedelta(seconds=30)
    unknown_id_horizon: timedelta = timedelta(days=7)
    # How receipts and inbound texts with consequences are confirmed with Flowroute's records.
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)


def stored_receipt(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A receipt as the receiver stored it, checked again: anyone with write access could have
    written the inbox. InputError if it is not one."""
    provider_id, status = fields.get("provider_id"), fields.get("status")
    if not isinstance(provider_id, str) or not provider_id.startswith("mdr"):
        raise InputError("the receipt has no message id")
    if not isinstance(status, str) or not status:
        raise InputError("the receipt has no status")
    keys = ("provider_id", "level", "status", "status_code", "description", "timestamp")
    return {k: fields.get(k) for k in keys}


def apply_receipt(delivery: Delivery, receipt: dict[str, Any], via: str) -> tuple[str, Any]:
    """Apply one receipt and log what it did."""
    outcome, state = delivery.apply_receipt({**receipt, "via": via})
    if outcome == APPLIED:
        if state in FINAL_STATES:
            metrics.receipt(str(state))
        log.info(
            "message." + str(state), provider_id=receipt["provider_id"], status=receipt["status"]
        )
    return outcome, state


def apply_dlr(
    delivery: Delivery,
    clock: Clock,
    config: ReceiptConfig,
    entry: Mapping[str, Any],
    lookups: Lookups,
) -> Step:
    """One inbox receipt: applied, kept aside while its message id is unknown, or, when it would
    make a message undelivered or opt someone out, applied only as Flowroute's record shows it."""
    fields = entry.get("fields")
    receipt = stored_receipt(fields if isinstance(fields, Mapping) else {})
    provider_id = receipt["provider_id"]
    doc = delivery.by_provider_id(provider_id)
    if doc is None:
        count = tries_of(entry)
        delay = backoff(count + 1, config.unknown_id_retry, timedelta(hours=1), rand=lambda: 1.0)
        log.info("receipt.waiting", provider_id=provider_id)
        return Step(UNKNOWN_ID, Fate.WAITING, "no message of ours has this id yet", delay)
    if not confirm.consequential(receipt, doc.get("state")):
        return Step(apply_receipt(delivery, receipt, "webhook")[0])
    found = lookups.get(provider_id)
    if found.found is Found.DEFERRED:
        return Step(None, Fate.DEFERRED)
    if found.found is Found.UNAVAILABLE:
        return Step(None, Fate.UNVERIFIED, found.detail)
    if found.record is not None:
        agreement = confirm.receipt_agreement(receipt, found.record)
        if agreement is Agreement.AGREES:
            apply_record(delivery, provider_id, found.record, "lookup")
            return Step("confirmed")
        if agreement is Agreement.CONTRADICTS:
            return Step(None, Fate.UNVERIFIED, "Flowroute's record shows another verdict")
        detail = "Flowroute's record does not show this receipt (yet)"
    else:
        detail = found.detail
    confirming = config.confirm
    absent = found.found is not Found.FAILED
    if confirming.given_up(entry.get("received_at"), clock.now(), absent=absent):
        return Step(None, Fate.UNVERIFIED, detail)
    count = tries_of(entry)
    return Step(None, Fate.WAITING, detail, confirming.delay(count))


def apply_record(
    delivery: Delivery, provider_id: str, record: Mapping[str, Any], via: str
) -> State | None:
    """Apply the receipts a message's record shows, oldest first; the final state they proved."""
    final = None
    for receipt in confirm.record_receipts(provider_id, record):
        final = apply_receipt(delivery, receipt, via)[1] or final
    return final


def poll(delivery: Delivery, records: MessageRecords, clock: Clock, config: ReceiptConfig) -> int:
    """Look up the record of each sent message still without a final receipt; apply what it
    shows and schedule the next look, backing off, until the horizon (then it stays `sent`)."""
    now = clock.now()
    docs = delivery.awaiting_receipt(now, config.poll_after, config.poll_horizon, config.batch_size)
    for doc in docs:
        if not delivery.store.trusts(doc):
            # Inserted as `sent` by someone else: no lookup is spent on it; intake decides.
            delivery.store.reintake(doc)
            continue
        try:
            _poll_one(delivery, records, clock, config, doc)
        except StoreRefused as exc:
            if not document_fault(exc):
                raise
            # A message the server cannot update must not stop polling for every other one.
            delivery.store.set_aside(doc["_id"], {"state": "sent"}, refusal(exc))
    if docs:
        log.info("receipt.polled", messages=len(docs))
    return len(docs)


def _poll_one(
    delivery: Delivery,
    records: MessageRecords,
    clock: Clock,
    config: ReceiptConfig,
    doc: Mapping[str, Any],
) -> None:
    """One sent message: its record looked up, its receipts applied, its next look set."""
    now = clock.now()
    provider_id = str(doc.get("provider_id"))
    try:
        record = records.get(provider_id)
    except ProviderError as error:
        log.warning("receipt.lookup_failed", provider_id=provider_id, code=error.code)
        record = {}
    final = apply_record(delivery, provider_id, record, "poll")
    current = delivery.by_provider_id(provider_id)
    if final is not None or current is None or current.get("state") != "sent":
        return
    polls = current.get("polls")
    count = polls if isinstance(polls, int) and not isinstance(polls, bool) else 0
    sent_at = current.get("sent_at") or now
    next_at = now + backoff(count + 1, config.poll_after, timedelta(hours=6), rand=lambda: 1.0)
    delivery.polled(current, None if next_at - sent_at > config.poll_horizon else next_at)
