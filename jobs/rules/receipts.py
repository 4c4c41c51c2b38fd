"""Delivery receipts: what a carrier status means, and how a receipt moves a message. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.model import Problem, Reason, State

# The SMSC vocabulary Flowroute's receipts follow; anything else is kept and is not final.
DELIVERED_STATUSES = frozenset({"delivered", "delivery success", "delivrd", "success"})
UNDELIVERED_STATUSES = frozenset(
    {"delivery failure", "smsc reject", "undelivered", "undeliverable", "undeliv", "rejected",
     "rejectd", "failed", "failure"}
)  # fmt: skip
EXPIRED_STATUSES = frozenset({"expired", "expird"})
OPTED_OUT_CODE = "1110"
MAX_KEPT = 20


def verdict(status: str, code: str | None = None) -> State | None:
    """The final state a receipt proves, or None when it is not final (or not understood)."""
    if code == OPTED_OUT_CODE:
        return State.UNDELIVERED
    text = " ".join(status.lower().split())
    if text in DELIVERED_STATUSES:
        return State.DELIVERED
    if text in UNDELIVERED_STATUSES:
        return State.UNDELIVERED
    if text in EXPIRED_STATUSES:
        return State.EXPIRED
    return None


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two receipts are the same when level, status, code and time agree (a resent callback)."""
    keys = ("level", "status", "status_code", "timestamp")
    return all(a.get(k) == b.get(k) for k in keys)


@dataclass(frozen=True)
class Change:
    """What a receipt does to a message: its new state (None: unchanged) and receipts list."""

    state: State | None
    receipts: list[dict[str, Any]]
    problem: Problem | None = None


def apply(
    state: str, kept: Sequence[Mapping[str, Any]], receipt: Mapping[str, Any]
) -> Change | None:
    """Fold one receipt into a message in `state` with the receipts `kept` so far.

    None when there is nothing to write (the same receipt again). Only `sent` moves, and only
    to a final state: a late, repeated or out-of-order receipt is kept but never moves a message
    backwards or from one final state to another.
    """
    if any(same(receipt, other) for other in kept):
        return None
    receipts = [*[dict(r) for r in kept], dict(receipt)][-MAX_KEPT:]
    final = verdict(str(receipt.get("status", "")), receipt.get("status_code"))
    if state != State.SENT.value or final is None:
        return Change(None, receipts)
    problem = None
    if final is not State.DELIVERED:
        code, text = receipt.get("status_code"), receipt.get("description") or receipt["status"]
        detail = f"carrier: {receipt['status']}" + (f" ({code}: {text})" if code else "")
        problem = Problem(Reason.CARRIER, detail)
    return Change(final, receipts, problem)
