"""Lease recovery: settle the messages whose worker died holding them."""

from __future__ import annotations

from datetime import datetime

import structlog

from jobs.clock import Clock
from jobs.dispatch.config import DispatchConfig
from jobs.errors import StoreRefused, document_fault, refusal
from jobs.model import State
from jobs.ports import Doc, Outbox
from jobs.rules import outcomes

log = structlog.get_logger("sms_outbox.recovery")


def recover(store: Outbox, clock: Clock, config: DispatchConfig) -> int:
    """Settle up to ten batches of expired leases; returns how many were found."""
    docs = store.expired_leases(limit=config.batch_size * 10)
    for doc in docs:
        if not store.trusts(doc):
            store.reintake(doc)  # inserted as `sending` by someone else: it goes to intake
            continue
        try:
            settle(store, doc, config.max_attempts, clock.now())
        except StoreRefused as exc:
            if not document_fault(exc):
                raise
            # A document the server cannot update must not fail recovery every cycle. Its
            # spent id, if it has one, stays spent: setting it aside never sends it again.
            expected = {"state": State.SENDING.value, "claim_token": doc.get("claim_token")}
            store.set_aside(doc["_id"], expected, refusal(exc))
    return len(docs)


def settle(store: Outbox, doc: Doc, max_attempts: int, now: datetime) -> None:
    """Sent if the send guard saw the request accepted; otherwise unknown if it may have left,
    queued again (or failed, its attempts used up) if it certainly did not."""
    verdict = store.guard.verdict(doc)
    if verdict.provider_id is not None:
        # The request was accepted but its worker died before recording it.
        store.finish(doc, State.SENT, provider_id=verdict.provider_id)
        log.warning("lease.recovered", message_id=str(doc["_id"]), state=State.SENT)
        return
    # The request leaves only after the guard's token is taken: marked in flight without one,
    # it never left, once recovery has voided the token a stalled worker could still take.
    in_doubt = verdict.in_doubt
    if doc.get("in_flight") is True and not in_doubt:
        in_doubt = not store.guard.void(doc)
    doc = {**doc, "in_flight": in_doubt}
    outcome = outcomes.after_lease_expired(doc, max_attempts, now)
    assert outcome.problem is not None
    if outcome.state is State.QUEUED and outcome.due_at is not None:
        done = store.retry_later(doc, outcome.due_at, outcome.problem)
    else:
        done = store.finish(doc, outcome.state, problem=outcome.problem)
    if done is not None:
        log.warning("lease.recovered", message_id=str(doc["_id"]), state=outcome.state)
