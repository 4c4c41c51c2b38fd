"""Operator interventions: what may be cancelled or retried and why a queued message is still
waiting. Pure functions; what a cancel or a retry writes is in jobs/rules/changes.py."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobs.clock import as_utc
from jobs.model import Reason, State
from jobs.rules.transitions import Event, allows, cancel_event, sources

Doc = dict[str, Any]

RETRYABLE: tuple[str, ...] = tuple(str(state) for state in sources(Event.RETRY))


def may_cancel(doc: Mapping[str, Any]) -> bool:
    """True while a cancel can still stop `doc` (jobs/rules/transitions.py): not yet sent, or
    a broadcast still fanning out."""
    return allows(doc.get("state"), cancel_event(doc))


def retry_filter(
    ids: list[Any] | None = None, campaign: str | None = None, reason: str | None = None
) -> Doc:
    """Messages (never broadcast requests) that ended failed or unknown, narrowed by the ids,
    the campaign and the reason code given."""
    query: Doc = {"state": {"$in": list(RETRYABLE)}, "audience": {"$exists": False}}
    if ids:
        query["_id"] = {"$in": ids}
    if campaign is not None:
        query["campaign"] = campaign
    if reason is not None:
        query["error.code"] = reason
    return query


def why_waiting(
    doc: Mapping[str, Any], now: datetime, lease_until: datetime | None = None
) -> str | None:
    """Why a message that is not finished has not gone yet, for `status`; None when finished.
    `lease_until` is the claim's lease (from the outbox), for a message being sent."""
    state = doc.get("state")
    if state is None:
        return "new: a daemon has not admitted it yet (is one running?)"
    if state == State.SENDING.value:
        return _being_sent(lease_until, now)
    if state != State.QUEUED.value:
        return None
    due = doc.get("due_at")
    error = doc.get("error")
    code = error.get("code") if isinstance(error, Mapping) else None
    if not isinstance(due, datetime) or as_utc(due) <= now:
        return "due now: waiting for a daemon to claim it (is one running?)"
    if code == Reason.QUIET_HOURS:
        return f"quiet hours in the recipient's local time; due {as_utc(due).isoformat()}"
    if code:
        return f"retrying after {code}; due {as_utc(due).isoformat()}"
    return f"scheduled (send_at); due {as_utc(due).isoformat()}"


def _being_sent(lease_until: datetime | None, now: datetime) -> str:
    if lease_until is None:
        return "claimed by a daemon, being sent"
    until = as_utc(lease_until)
    if until <= now:
        return (
            f"its daemon stopped: the claim's lease ended {until.isoformat()}; a running daemon"
            " takes it back within seconds (is one running?)"
        )
    return (
        f"claimed by a daemon, being sent; if that daemon died, another takes it back when the"
        f" lease ends, {until.isoformat()}"
    )
