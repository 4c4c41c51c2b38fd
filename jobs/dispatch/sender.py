"""One claimed message's path: vet, defer, pace, begin the send, send, finish it, record."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog
from structlog.contextvars import bound_contextvars

from jobs import metrics
from jobs.clock import Clock
from jobs.dispatch.account_gate import AccountGate
from jobs.dispatch.config import DispatchConfig
from jobs.errors import (
    ProviderError,
    StoreRefused,
    StoreUnavailable,
    UnknownOutcomeError,
    refusal,
)
from jobs.flowroute import SmsProvider
from jobs.keys import Signatures
from jobs.model import Problem, Reason, State
from jobs.pacing import Pacer
from jobs.ports import Directory, Doc, Outbox, Outcome, SendRefused, SendTicket
from jobs.rules import optin, outcomes, quiet_hours, replay, replies, segments, vetting

log = structlog.get_logger("sms_outbox.cycle")
T = TypeVar("T")

# Tries of the record of an accepted request that the server refuses, and the pause before the
# next (times the try's number).
RECORD_REFUSALS = 3
RECORD_REFUSAL_PAUSE = 0.2


def release(store: Outbox, docs: list[Doc]) -> None:
    """Hand claimed, unsent messages back, due now, their attempts refunded."""
    for doc in docs:
        store.release(doc)
    log.info("claim.released", count=len(docs))


class Sender:
    """Takes one claimed message through its steps, and turns what came of it into its state.
    Several send workers may share one: it keeps no state of its own between messages."""

    def __init__(
        self,
        store: Outbox,
        gate: AccountGate,
        provider: SmsProvider,
        pacer: Pacer,
        clock: Clock,
        config: DispatchConfig,
        signatures: Signatures | None,
        stopping: Callable[[], bool],
    ) -> None:
        self.store = store
        self.gate = gate
        self.provider = provider
        self.pacer = pacer
        self.clock = clock
        self.config = config
        self.signatures = signatures
        self.stopping = stopping  # the dispatcher was asked to stop: unsent messages go back

    def deliver(self, doc: Doc, directory: Directory) -> str:
        """A message's path: vet, defer, pace, begin the send, send, finish it, record."""
        vetted = vetting.vet(
            doc, self.clock.now(), directory, self.signatures,
            max_segments=self.config.max_segments, max_attempts=self.config.max_attempts,
        )  # fmt: skip
        if vetted.problem is not None or vetted.source is None:
            assert vetted.problem is not None
            return self._reject(doc, vetted.problem, vetted.state)
        if self._early(doc):
            return State.QUEUED.value
        # A reply answers a text the recipient just sent, an opt-in text a page or a JOIN the
        # person is waiting on: neither waits for their morning.
        if not (replies.is_reply(doc) or optin.is_optin(doc)):
            waiting = self._defer(doc, vetted.to)
            if waiting is not None:
                return waiting
        if self._held(doc):
            return State.QUEUED.value
        self.pacer.acquire()
        if self.stopping():
            release(self.store, [doc])
            return State.QUEUED.value
        # Another send worker may have met an account refusal while this one waited its turn.
        if self._held(doc):
            return State.QUEUED.value
        ticket = self.store.begin_send(doc, self.config.lease)
        if isinstance(ticket, SendRefused):
            return self._not_begun(doc, ticket)
        body = segments.normalize_text(vetted.fields["body"])
        try:
            provider_id = self.provider.send(vetted.to, vetted.source, body)
        except ProviderError as error:
            doubt = isinstance(error, UnknownOutcomeError)
            outcome = Outcome.IN_DOUBT if doubt else Outcome.NOT_SENT
            self._durably(lambda: self.store.finish_send(ticket, outcome))
            return self._after_error(doc, error, directory)
        with bound_contextvars(provider_id=provider_id):
            self._after_202(doc, ticket, provider_id, vetted.source)
        return State.SENT.value

    def _after_202(self, doc: Doc, ticket: SendTicket, provider_id: str, source: str) -> None:
        """Record an accepted request. Whatever the server refuses now, the message is never set
        aside as rejected: its request went out. Each write a refusal meets is tried again a
        few times; if the record stays refused, the message keeps its claim, lease recovery
        settles it from its send ticket or as `unknown`, and reconciliation finds the 202 its
        spent id keeps."""
        closed = self._despite_refusals(
            lambda: self._durably(lambda: self.store.finish_send(ticket, Outcome.SENT, provider_id))
        )
        recorded = self._despite_refusals(lambda: self._record_sent(doc, provider_id, source))
        if not (closed and recorded):
            log.error("message.sent_unrecorded", detail="left to lease recovery and reconciliation")

    def _despite_refusals(self, write: Callable[[], object]) -> bool:
        """Run `write`, again after a pause while the server refuses it; False if it never took."""
        for attempt in range(1, RECORD_REFUSALS + 1):
            try:
                write()
                return True
            except StoreRefused as exc:
                log.warning("record.refused", attempt=attempt, detail=refusal(exc))
                if attempt < RECORD_REFUSALS:
                    self.clock.sleep(RECORD_REFUSAL_PAUSE * attempt)
        return False

    def _not_begun(self, doc: Doc, refused: SendRefused) -> str:
        """A send the store would not begin: the claim was lost, or the message is a copy of
        one already sent."""
        if refused.lost is not None:
            log.warning("claim.lost", why=refused.lost)
            metrics.claim_lost()
        if refused.replay_of is not None:
            return self._reject(doc, replay.replay_problem(refused.replay_of))
        return "lost"

    def _early(self, doc: Doc) -> bool:
        """A due time moved before the signed send_at: the message waits for the send_at."""
        when = replay.not_before(doc, self.clock.now())
        if when is None:
            return False
        self.store.retry_later(doc, when, replay.early_problem(when), refund=True)
        log.warning("message.early", due_at=when.isoformat())
        return True

    def _held(self, doc: Doc) -> bool:
        """While the account is held the message waits, due at once, attempt refunded: no
        daemon claims until the next probe, and it goes first after."""
        if self.gate.waiting() is None:
            return False
        self.store.retry_later(doc, self.clock.now(), self.gate.problem(), refund=True)
        return True

    def _defer(self, doc: Doc, to: str) -> str | None:
        """Outside the recipient's allowed hours the message waits for them, attempt refunded;
        a recipient whose possible zones share no allowed hour in the coming days fails (an
        operator may retry it once the window is wider)."""
        window = self.config.quiet_hours
        if window is None:
            return None
        try:
            wait = quiet_hours.next_allowed(self.clock.now(), to, window)
        except quiet_hours.NoAllowedHours as exc:
            problem = Problem(Reason.NO_ALLOWED_HOURS, str(exc))
            return self._reject(doc, problem, State.FAILED)
        if wait is None:
            return None
        hours = f"{window.start:%H:%M}-{window.end:%H:%M}"
        detail = f"outside {hours} in the recipient's local time; due {wait.isoformat()}"
        self.store.retry_later(doc, wait, Problem(Reason.QUIET_HOURS, detail), refund=True)
        log.info("message.deferred", reason=Reason.QUIET_HOURS, due_at=wait.isoformat())
        return State.QUEUED.value

    def _record_sent(self, doc: Doc, provider_id: str, source: str) -> None:
        self._durably(self.gate.accepted)
        extra = {"from": source}
        record = self._durably(
            lambda: self.store.finish(doc, State.SENT, provider_id=provider_id, extra=extra)
        )
        if record is not None:
            log.info("message.sent")
        elif self._durably(lambda: self.store.record_late_success(doc, provider_id)):
            log.warning("message.sent_late")
        else:
            # Another worker settled this message after our lease ran out; its record stands.
            log.error("message.sent_unrecorded")

    def _after_error(self, doc: Doc, error: ProviderError, directory: Directory) -> str:
        outcome = outcomes.after_error(
            error, int(doc.get("attempts", 0)), self.config.max_attempts, self.clock.now()
        )
        if outcome.hold:
            self._durably(lambda: self.gate.refused(error))
        elif outcome.refund:
            self.pacer.penalize()
        assert outcome.problem is not None
        problem = outcome.problem
        if outcome.state is State.QUEUED and outcome.due_at is not None:
            due_at = outcome.due_at
            self._durably(
                lambda: self.store.retry_later(doc, due_at, problem, refund=outcome.refund)
            )
            log.info("message.retry", code=error.code, due_at=due_at.isoformat())
        else:
            self._durably(lambda: self.store.finish(doc, outcome.state, problem=problem))
            log.warning("message." + outcome.state.value, code=error.code)
        if outcome.opted_out:
            directory.opt_out(doc["to"], now=self.clock.now(), reason="flowroute 1110")
            metrics.opted_out("flowroute_1110")
        return outcome.state.value

    def _reject(self, doc: Doc, problem: Problem, state: State = State.REJECTED) -> str:
        self.store.finish(doc, state, problem=problem)
        log.info("message." + state.value, reason=problem.code, detail=problem.detail)
        return state.value

    def _durably(self, write: Callable[[], T]) -> T | None:
        """Retry a record write through a database outage: the send already happened."""
        deadline = self.clock.monotonic() + self.config.record_retry_seconds
        failures = 0
        while True:
            try:
                result = write()
            except StoreUnavailable as exc:
                if self.clock.monotonic() >= deadline:
                    log.error("record.lost", error=str(exc))
                    return None
                if failures == 0:
                    log.warning("database.unavailable", during="record", error=str(exc))
                    metrics.database_unavailable("record")
                failures += 1
                self.clock.sleep(1.0)
                continue
            if failures:
                log.info("database.recovered", during="record", retries=failures)
            return result
