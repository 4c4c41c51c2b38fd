"""The send cycle: recover, admit, claim a batch, check, pace, send and record each message."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from pymongo.errors import ConnectionFailure

from jobs import fanout, intake, metrics, outcomes, policy, quiet_hours, segments, tickets
from jobs.clock import Clock
from jobs.directory import Directory
from jobs.errors import ProviderError, UnknownOutcomeError
from jobs.flowroute import SmsProvider
from jobs.keys import Signatures
from jobs.model import DEFAULT_MAX_SEGMENTS, Problem, Reason, State
from jobs.pacing import Pacer
from jobs.quiet_hours import Window
from jobs.store import Doc, OutboxStore

log = structlog.get_logger("sms_outbox.cycle")
T = TypeVar("T")


@dataclass(frozen=True)
class DispatchConfig:
    """The `[dispatch]` settings the cycle needs."""

    batch_size: int = 10
    lease_seconds: float = 120.0
    max_attempts: int = 5
    record_retry_seconds: float = 60.0
    max_segments: int = DEFAULT_MAX_SEGMENTS
    quiet_hours: Window | None = None

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)


@dataclass
class CycleReport:
    """What one cycle did; `idle` means nothing was due."""

    admitted: int = 0
    recovered: int = 0
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        return self.claimed == 0 and self.admitted == 0 and self.recovered == 0

    def count(self, state: str) -> None:
        self.outcomes[state] = self.outcomes.get(state, 0) + 1


class Dispatcher:
    """Runs cycles; `stop()` makes the running cycle release what it has not started sending."""

    def __init__(
        self,
        store: OutboxStore,
        directory: Directory,
        provider: SmsProvider,
        pacer: Pacer,
        clock: Clock,
        config: DispatchConfig,
        signatures: Signatures | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.provider = provider
        self.pacer = pacer
        self.clock = clock
        self.config = config
        self.signatures = signatures
        self._stopping = threading.Event()
        # Claimed but unsent when the database went away; handed back once it is reachable.
        self._orphans: list[Doc] = []

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run_once(self) -> CycleReport:
        """One cycle. Database outages propagate; every per-message problem becomes a state."""
        report = CycleReport()
        if self.stopping:
            return report
        self._release_orphans()
        report.recovered = self.recover()
        self.store.resync(limit=100)
        report.admitted = self.admit()
        batch = self.store.claim(self.config.batch_size, self.config.lease)
        report.claimed = len(batch)
        if batch:
            log.info("claim.batch", size=len(batch))
        for index, doc in enumerate(batch):
            if self.stopping:
                self._release(batch[index:])
                break
            try:
                state = self._handle(doc)
            except ConnectionFailure:
                # Nothing from here on was sent: hand it back as soon as the database returns,
                # rather than leaving it to wait out its lease.
                self._orphans = batch[index:]
                raise
            except Exception:
                # A bug met by one message must not hold up the others. This one keeps its
                # claim and is settled by lease recovery: unknown if its request may have gone
                # out, queued again (its attempt counted) if not.
                log.exception("message.crashed", message_id=str(doc["_id"]))
                state = "crashed"
            report.count(state)
        return report

    def _release_orphans(self) -> None:
        while self._orphans:
            self.store.release(self._orphans[0])
            self._orphans.pop(0)

    def recover(self) -> int:
        """Settle documents whose worker died holding them."""
        docs = self.store.expired_leases(limit=self.config.batch_size * 10)
        for doc in docs:
            verdict = self.store.tickets.verdict(doc["_id"])
            if verdict.provider_id is not None:
                # The request was accepted but its worker died before recording it.
                self.store.finish(doc, State.SENT, provider_id=verdict.provider_id)
                log.warning("lease.recovered", message_id=str(doc["_id"]), state=State.SENT)
                continue
            if verdict.in_doubt:
                doc = {**doc, "in_flight": True}
            outcome = outcomes.after_lease_expired(doc, self.config.max_attempts, self.clock.now())
            assert outcome.problem is not None
            if outcome.state is State.QUEUED and outcome.due_at is not None:
                done = self.store.retry_later(doc, outcome.due_at, outcome.problem)
            else:
                done = self.store.finish(doc, outcome.state, problem=outcome.problem)
            if done is not None:
                log.warning("lease.recovered", message_id=str(doc["_id"]), state=outcome.state)
        return len(docs)

    def admit(self) -> int:
        """Validate new producer documents: each is queued or rejected with a reason."""
        docs = self.store.new_documents(limit=self.config.batch_size * 10)
        for doc in docs:
            admission = intake.admit(doc, self.clock.now(), self.config.max_segments)
            if self.store.admit(doc["_id"], admission) is not None and admission.problem:
                log.info(
                    "message.rejected", message_id=str(doc["_id"]), reason=admission.problem.code
                )
        return len(docs)

    def _release(self, docs: list[Doc]) -> None:
        for doc in docs:
            self.store.release(doc)
        log.info("claim.released", count=len(docs))

    def _handle(self, doc: Doc) -> str:
        bound = log.bind(message_id=str(doc["_id"]), campaign=doc.get("campaign"))
        # Route on `audience`, which is signed and is what intake reads, not on `kind`: anyone
        # who can write could turn a signed message into a broadcast by relabelling it.
        if "audience" in doc:
            return fanout.expand(
                self.store,
                self.directory,
                self.clock,
                self.config,
                doc,
                bound,
                self._stopping.is_set,
                self.signatures,
            )
        admission = intake.admit(doc, self.clock.now(), self.config.max_segments)
        problem = admission.problem
        if problem is None and self.signatures is not None:
            problem = self.signatures.check(doc)
        if problem is not None:
            return self._reject(doc, problem, bound)
        if int(doc.get("attempts", 0)) > self.config.max_attempts:
            detail = f"claimed {doc.get('attempts')} times"
            return self._reject(doc, Problem(Reason.MAX_ATTEMPTS, detail), bound, State.FAILED)
        fields = admission.fields
        decision = policy.decide(
            fields["user"],
            fields["to"],
            fields.get("from"),
            self.directory.sources_for(fields["user"]),
            self.directory.recipient(fields["to"]),
        )
        if decision.problem is not None or decision.source is None:
            assert decision.problem is not None
            return self._reject(doc, decision.problem, bound)
        if self._quiet(doc, fields["to"], bound):
            return State.QUEUED.value
        self.pacer.acquire()
        if self.stopping:
            self._release([doc])
            return State.QUEUED.value
        # The fenced renewal finds out whether this worker still holds the claim; the ticket then
        # settles the rare race in which two workers both passed it (see jobs/tickets.py).
        if self.store.renew(doc, self.config.lease, in_flight=True) is None:
            bound.warning("claim.lost")
            metrics.claim_lost()
            return "lost"
        ticket = self.store.tickets.take(doc)
        if ticket is None:
            bound.warning("claim.lost", why="another worker holds this claim's send ticket")
            metrics.claim_lost()
            return "lost"
        body = segments.normalize_text(fields["body"])
        return self._send(doc, ticket, (fields["to"], decision.source, body), bound)

    def _quiet(self, doc: Doc, to: str, bound: Any) -> bool:
        """Outside the recipient's allowed hours the message waits for them, attempt refunded."""
        window = self.config.quiet_hours
        if window is None:
            return False
        wait = quiet_hours.next_allowed(self.clock.now(), to, window)
        if wait is None:
            return False
        hours = f"{window.start:%H:%M}-{window.end:%H:%M}"
        detail = f"outside {hours} in the recipient's local time; due {wait.isoformat()}"
        self.store.retry_later(doc, wait, Problem(Reason.QUIET_HOURS, detail), refund=True)
        bound.info("message.deferred", reason=Reason.QUIET_HOURS, due_at=wait.isoformat())
        return True

    def _send(self, doc: Doc, ticket: str, message: tuple[str, str, str], bound: Any) -> str:
        to, source, body = message
        try:
            provider_id = self.provider.send(to, source, body)
        except ProviderError as error:
            doubt = isinstance(error, UnknownOutcomeError)
            settle = functools.partial(
                self.store.tickets.settle, ticket, tickets.IN_DOUBT if doubt else tickets.NOT_SENT
            )
            self._durably(settle, bound)
            return self._after_error(doc, error, bound)
        bound = bound.bind(provider_id=provider_id)
        self._durably(
            functools.partial(self.store.tickets.settle, ticket, tickets.SENT, provider_id), bound
        )
        record = functools.partial(
            self.store.finish, doc, State.SENT, provider_id=provider_id, extra={"from": source}
        )
        if self._durably(record, bound) is not None:
            bound.info("message.sent")
        elif self._durably(lambda: self.store.record_late_success(doc, provider_id), bound):
            bound.warning("message.sent_late")
        else:
            # Another worker settled this message after our lease ran out; its record stands.
            bound.error("message.sent_unrecorded")
        return State.SENT.value

    def _after_error(self, doc: Doc, error: ProviderError, bound: Any) -> str:
        outcome = outcomes.after_error(
            error, int(doc.get("attempts", 0)), self.config.max_attempts, self.clock.now()
        )
        if outcome.refund:
            self.pacer.penalize()
        assert outcome.problem is not None
        problem = outcome.problem
        if outcome.state is State.QUEUED and outcome.due_at is not None:
            due_at = outcome.due_at
            self._durably(
                lambda: self.store.retry_later(doc, due_at, problem, refund=outcome.refund), bound
            )
            bound.info("message.retry", code=error.code, due_at=due_at.isoformat())
        else:
            self._durably(lambda: self.store.finish(doc, outcome.state, problem=problem), bound)
            bound.warning("message." + outcome.state.value, code=error.code)
        if outcome.opted_out:
            self.directory.opt_out(doc["to"], now=self.clock.now(), reason="flowroute 1110")
            metrics.opted_out("flowroute_1110")
        return outcome.state.value

    def _reject(self, doc: Doc, problem: Problem, bound: Any, state: State = State.REJECTED) -> str:
        self.store.finish(doc, state, problem=problem)
        bound.info("message." + state.value, reason=problem.code, detail=problem.detail)
        return state.value

    def _durably(self, write: Callable[[], T], bound: Any) -> T | None:
        """Retry a record write through a database outage: the send already happened."""
        deadline = self.clock.monotonic() + self.config.record_retry_seconds
        failures = 0
        while True:
            try:
                result = write()
            except ConnectionFailure as exc:
                if self.clock.monotonic() >= deadline:
                    bound.error("record.lost", error=type(exc).__name__)
                    return None
                if failures == 0:
                    bound.warning("database.unavailable", during="record", error=type(exc).__name__)
                    metrics.database_unavailable("record")
                failures += 1
                self.clock.sleep(1.0)
                continue
            if failures:
                bound.info("database.recovered", during="record", retries=failures)
            return result


def summary(report: CycleReport) -> Mapping[str, Any]:
    """The report as log keys."""
    return {"admitted": report.admitted, "claimed": report.claimed, **report.outcomes}
