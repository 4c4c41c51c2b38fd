"""The writes every outbox store makes alike: the changes of a claimed message the transition
table decides (jobs/rules/transitions.py), and the send protocol. A store supplies `_commit`,
which writes one change where the document still holds its fence."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobs.clock import Clock
from jobs.model import Problem, State
from jobs.ports.sending import (
    CLAIM_ENDED,
    TICKET_TAKEN,
    Outcome,
    SendGuard,
    SendRefused,
    SendTicket,
    SpentIds,
)
from jobs.rules import changes
from jobs.rules.transitions import Change

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")


class OutboxWrites:
    """The fenced writes after a claim (`renew`, `finish`, `retry_later`, `release`,
    `record_late_success`), `reintake`, and one send's `begin_send` and `finish_send`, for a
    store with a `clock`, a send `guard`, `spent` ids and `_commit`."""

    clock: Clock

    @property
    def guard(self) -> SendGuard:
        """The store's send guard."""
        raise NotImplementedError

    @property
    def spent(self) -> SpentIds:
        """The store's record of spent signed ids."""
        raise NotImplementedError

    def _commit(self, doc_id: Any, change: Change | None) -> Doc | None:
        """Write `change` to the document `doc_id` atomically, if the table allowed it (not
        None) and the document still holds its fence; its status is copied when the change is
        public. Returns the document as written, None when nothing was."""
        raise NotImplementedError

    def _atomic(self) -> contextlib.AbstractContextManager[Any]:
        """What makes a send's opening or closing one step (a lock in memory; on a server, the
        guard and the spent ids make each of its writes safe on its own)."""
        return contextlib.nullcontext()

    def renew(
        self,
        doc: Mapping[str, Any],
        lease: timedelta,
        *,
        in_flight: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Extend the lease; `in_flight` marks that the request to Flowroute is about to go out.
        Neither is public: only `extra` fields that the status holds make a new revision."""
        now = self.clock.now()
        change = changes.renewed(doc, now, lease, in_flight=in_flight, extra=extra)
        return self._commit(doc["_id"], change)

    def finish(
        self,
        doc: Mapping[str, Any],
        state: State,
        *,
        problem: Problem | None = None,
        provider_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Record a terminal outcome of a claimed document."""
        change = changes.finished(
            doc, state, self.clock.now(), problem=problem, provider_id=provider_id, extra=extra
        )
        return self._commit(doc["_id"], change)

    def retry_later(
        self, doc: Mapping[str, Any], due_at: datetime, problem: Problem, *, refund: bool = False
    ) -> Doc | None:
        """Queue a claimed document again until `due_at`; `refund` un-counts the attempt."""
        change = changes.retried_later(doc, self.clock.now(), due_at, problem, refund=refund)
        return self._commit(doc["_id"], change)

    def release(self, doc: Mapping[str, Any], *, keep_place: bool = False) -> Doc | None:
        """Hand back a claimed document that was never sent: due now (or, with `keep_place`,
        when it was due, so it keeps its turn), attempt refunded."""
        change = changes.released(doc, self.clock.now(), keep_place=keep_place)
        return self._commit(doc["_id"], change)

    def record_late_success(self, doc: Mapping[str, Any], provider_id: str) -> Doc | None:
        """A fenced-out worker proves a send: upgrade the `unknown` its expired lease caused."""
        change = changes.late_success(doc, self.clock.now(), provider_id)
        return self._commit(doc["_id"], change)

    def reintake(self, doc: Mapping[str, Any]) -> bool:
        """Make a document without the daemon's seal a new producer document again: its state
        and every daemon-owned field removed, so intake checks and normalises it. Fenced on the
        state and claim token it was read with."""
        done = self._commit(doc["_id"], changes.reintake(doc)) is not None
        if done:
            log.warning("message.unsealed", message_id=str(doc["_id"]), state=doc.get("state"))
        return done

    # The send: at most one request per claim, none for a spent id.

    def begin_send(self, doc: Mapping[str, Any], lease: timedelta) -> SendTicket | SendRefused:
        """Open the request of this claim: the fenced in-flight mark finds out whether the claim
        is still held, the send guard settles the rare race in which two workers both passed it,
        and the spent id refuses a copy of a message already sent."""
        ticket = SendTicket.of(doc)
        mark = {"ticket": ticket.token}  # what lease recovery may void (jobs/dispatch/recovery)
        with self._atomic():
            if self.renew(doc, lease, in_flight=True, extra=mark) is None:
                return SendRefused(lost=CLAIM_ENDED)
            token = self.guard.take(doc)
            if token is None:
                copy = str(doc["_id"]) if self.guard.taken_by_a_copy(doc) else None
                return SendRefused(lost=TICKET_TAKEN, replay_of=copy)
            # Spent under this claim's own token: a copy claimed at the same revision has another.
            if not self.spent.take(ticket.spent_id, doc["_id"], ticket.claim):
                self.guard.settle(token, Outcome.NOT_SENT)
                return SendRefused(replay_of=ticket.spent_id)
            return ticket

    def finish_send(
        self, ticket: SendTicket, outcome: Outcome, provider_id: str | None = None
    ) -> None:
        """Close a send with what came of its request: a 202 keeps its id spent for good (the
        spent ids may write it at their next `flush`), a request that may have left keeps it
        spent, one that certainly did not frees it for the next claim."""
        with self._atomic():
            if outcome is Outcome.SENT and provider_id is not None:
                # The spent id keeps the 202 whatever later happens to the outbox document.
                self.spent.sent(ticket.spent_id, ticket.claim, provider_id)
            self.guard.settle(ticket.token, outcome, provider_id)
            if outcome is Outcome.NOT_SENT:  # an unsettled spent id already counts as sent
                self.spent.settle(ticket.spent_id, ticket.claim, outcome)
