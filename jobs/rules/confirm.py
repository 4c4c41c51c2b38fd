"""Confirming a callback with Flowroute's record of the message: does the record say what the
callback claims? Pure: Flowroute signs no callback, so its record is the signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from jobs.errors import InputError
from jobs.model import State
from jobs.rules import callbacks, phone, receipts
from jobs.rules.outcomes import backoff

CONSEQUENTIAL = frozenset({State.UNDELIVERED, State.EXPIRED})


@dataclass(frozen=True)
class ConfirmConfig:
    """How callbacks are confirmed: lookups a cycle may spend, how long a record may take to
    appear, and how long failing lookups are retried, backing off from `retry`."""

    lookups_per_cycle: int = 2
    retry: timedelta = timedelta(seconds=5)
    retry_cap: timedelta = timedelta(minutes=30)
    # Flowroute's records take 3-10 s to become visible; one still missing after this is absent.
    visible_within: timedelta = timedelta(minutes=2)
    horizon: timedelta = timedelta(days=1)

    def delay(self, tries: int) -> timedelta:
        """The wait before lookup number `tries + 1` of the same callback."""
        return backoff(tries + 1, self.retry, self.retry_cap, rand=lambda: 1.0)

    def given_up(self, received: Any, now: datetime, *, absent: bool) -> bool:
        """True when a callback received then is not to be looked up again: its record is still
        missing after `visible_within`, or lookups kept failing for `horizon`."""
        if not isinstance(received, datetime):
            return True
        return now - received > (self.visible_within if absent else self.horizon)


def has_message_id(inbound_id: str) -> bool:
    """Whether the callback carried Flowroute's id (the receiver names one without by a hash)."""
    return not inbound_id.startswith(callbacks.NO_ID_PREFIX)


def inbound_mismatch(fields: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """Why Flowroute's record is not the inbound text the callback claims, or None when it is:
    an inbound message from the same number, to the same number, with the same body."""
    if record.get("direction") != "inbound":
        return f"Flowroute's record is not an inbound message ({str(record.get('direction'))[:20]})"
    for name in ("from", "to"):
        try:
            same = phone.normalize(record.get(name)) == fields.get(name)
        except InputError:
            same = False
        if not same:
            return f"Flowroute's record has another '{name}'"
    if record.get("body") != fields.get("body"):
        return "Flowroute's record has another body"
    return None


def consequential(receipt: Mapping[str, Any], state: Any) -> bool:
    """Whether applying this receipt would change something that matters: make a `sent` message
    undelivered or expired, or opt its recipient out (a 1110). Such a receipt waits for the
    record; a `delivered` or a not-final one is applied as it comes."""
    if receipt.get("status_code") == receipts.OPTED_OUT_CODE:
        return True
    verdict = receipts.verdict(str(receipt.get("status", "")), receipt.get("status_code"))
    return verdict in CONSEQUENTIAL and state == State.SENT.value


class Agreement(StrEnum):
    AGREES = "agrees"
    CONTRADICTS = "contradicts"
    NOT_YET = "not_yet"


def record_receipts(provider_id: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The delivery receipts in a message's record, oldest first, read as callbacks are."""
    found = record.get("delivery_receipts")
    kept = []
    for item in reversed(found if isinstance(found, list) else []):
        if not isinstance(item, dict):
            continue
        try:
            kept.append(callbacks.receipt({"id": provider_id, **item}))
        except (InputError, TypeError):
            continue
    return kept


def receipt_agreement(receipt: Mapping[str, Any], record: Mapping[str, Any]) -> Agreement:
    """Does the record show the verdict this receipt claims (and its 1110, if it claims one)?
    A record with another final verdict contradicts it; one with none yet may still show it."""
    want = receipts.verdict(str(receipt.get("status", "")), receipt.get("status_code"))
    opted_out = receipt.get("status_code") == receipts.OPTED_OUT_CODE
    other_final = False
    for item in record_receipts(str(receipt.get("provider_id")), record):
        verdict = receipts.verdict(item["status"], item.get("status_code"))
        if verdict == want and (
            not opted_out or item.get("status_code") == receipts.OPTED_OUT_CODE
        ):
            return Agreement.AGREES
        other_final = other_final or verdict is not None
    return Agreement.CONTRADICTS if other_final else Agreement.NOT_YET
