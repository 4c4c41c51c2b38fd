"""The send cycle: recover, admit, claim a batch, and take each message through its steps."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import structlog
from structlog.contextvars import bound_contextvars

from jobs import metrics
from jobs.clock import Clock
from jobs.dispatch import fanout, recovery
from jobs.dispatch.account_gate import AccountGate
from jobs.dispatch.config import DispatchConfig
from jobs.dispatch.grants import CycleDirectory
from jobs.dispatch.inflight import InFlight
from jobs.errors import (
    ProviderError,
    StoreError,
    StoreRefused,
    StoreUnavailable,
    UnknownOutcomeError,
    document_fault,
    refusal,
)
from jobs.flowroute import SmsProvider
from jobs.keys import Signatures
from jobs.model import Problem, Reason, State
from jobs.pacing import Pacer
from jobs.ports import Directory, Doc, Outbox, Outcome, Sealer, SendRefused, SendTicket
from jobs.rules import (
    intake,
    optin,
    outcomes,
    quiet_hours,
    replay,
    replies,
    seal,
    segments,
    vetting,
)  # fmt: skip

log = structlog.get_logger("sms_outbox.cycle")
T = TypeVar("T")
# How often lease recovery and the status-copy resync scan the outbox; a cycle in between skips
# them. Small against any lease, so a crashed worker's messages wait out their lease and a few
# seconds more at most.
REPAIR_SCAN_SECONDS = 5.0

__all__ = ["CycleReport", "DispatchConfig", "Dispatcher", "summary"]


@dataclass
class CycleReport:
    """What one cycle did; `idle` means nothing was due."""

    admitted: int = 0
    recovered: int = 0
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0  # messages still being handled by the send workers after the cycle

    @property
    def idle(self) -> bool:
        busy = self.claimed or self.admitted or self.recovered or self.in_flight
        return not busy

    def count(self, state: str) -> None:
        self.outcomes[state] = self.outcomes.get(state, 0) + 1


class Dispatcher:
    """Runs cycles; `stop()` makes the running cycle release what it has not started sending."""

    def __init__(
        self,
        store: Outbox,
        directory: Directory,
        provider: SmsProvider,
        pacer: Pacer,
        clock: Clock,
        config: DispatchConfig,
        signatures: Signatures | None = None,
        gate: AccountGate | None = None,
    ) -> None:
        self.store = store
        self.gate = gate or AccountGate(store.holds, clock)
        self.directory = directory
        self.provider = provider
        self.pacer = pacer
        self.clock = clock
        self.config = config
        self.signatures = signatures
        self._stopping = threading.Event()
        # Claimed but unsent when the database went away; handed back once it is reachable.
        self._orphans: list[Doc] = []
        self._orphans_lock = threading.Lock()
        self._failure: StoreUnavailable | None = None  # met by a send worker, raised by the cycle
        self._scanned_at = -math.inf  # when lease recovery and resync last scanned (monotonic)
        # With more than one send in flight, claimed messages are handled by a pool of workers
        # while the cycle goes on claiming; with one, the cycle handles them itself, in order.
        self._inflight = InFlight(config.concurrency) if config.concurrency > 1 else None

    def stop(self) -> None:
        self._stopping.set()

    def finish(self) -> CycleReport:
        """Wait for every send in flight to finish and record their status copies; the daemon
        calls it on its way out, tests call it to settle what `run_once` handed to workers."""
        report = CycleReport()
        if self._inflight is not None:
            self._inflight.drain()
            self._harvest(report)
        self.store.mark_synced()
        return report

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run_once(self) -> CycleReport:
        """One cycle. Database outages propagate; every per-message problem becomes a state."""
        report = CycleReport()
        self._harvest(report)
        if self.stopping:
            return report
        self._cycle(report, CycleDirectory(self.directory))
        # The 202s of the whole cycle go to their spent ids, and the status copies are marked
        # synced, in one write each.
        self.store.spent.flush()
        self.store.mark_synced()
        self._harvest(report)
        return report

    def _harvest(self, report: CycleReport) -> None:
        """Count what the send workers finished; a database outage one of them met fails this
        cycle, as it would have failed the cycle that handled the message itself."""
        if self._inflight is None:
            return
        for state in self._inflight.harvest():
            report.count(state)
        report.in_flight = self._inflight.count
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _room(self) -> int:
        """How many messages this cycle may claim: a batch, or with sends in flight as many as
        keep the workers busy plus one batch waiting for them."""
        if self._inflight is None:
            return self.config.batch_size
        room = self.config.concurrency + self.config.batch_size - self._inflight.count
        return max(0, min(self.config.batch_size, room))

    def _cycle(self, report: CycleReport, directory: CycleDirectory) -> None:
        self._release_orphans()
        # Leases last minutes and a missed status copy is only late, so the two repair scans run
        # every few seconds rather than every cycle; new documents are looked for every cycle.
        if self.clock.monotonic() - self._scanned_at >= REPAIR_SCAN_SECONDS:
            report.recovered = self.recover()
            self.store.resync(limit=100)
            self._scanned_at = self.clock.monotonic()
        report.admitted = self.admit(directory)
        self.gate.refresh()
        # While Flowroute refuses the account, leave the queue alone until the next probe.
        held = self.gate.waiting() is not None
        room = 0 if held else self._room()
        batch = self.store.claim(room, self.config.lease) if room else []
        report.claimed = len(batch)
        if batch:
            log.info("claim.batch", size=len(batch))
            try:
                directory.read_consent(batch)
            except StoreUnavailable:
                self._orphan(batch)  # none of it was sent: handed back once the database returns
                raise
        if self._inflight is not None:
            for doc in batch:
                self._inflight.submit(partial(self._work, doc, directory))
            # Back for the next batch once the workers have room for it.
            self._inflight.wait_below(self.config.concurrency, lambda: self.stopping)
            return
        for index, doc in enumerate(batch):
            if self.stopping:
                self._release(batch[index:])
                break
            with bound_contextvars(message_id=str(doc["_id"]), campaign=doc.get("campaign")):
                try:
                    state = self._handle(doc, directory)
                except StoreUnavailable:
                    # Nothing from here on was sent: hand it back as soon as the database
                    # returns, rather than leaving it to wait out its lease.
                    self._orphan(batch[index:])
                    raise
                except StoreRefused as exc:
                    if not document_fault(exc):
                        raise
                    state = self._refused(doc, exc)
                except Exception:
                    # A bug met by one message must not hold up the others. This one keeps its
                    # claim and is settled by lease recovery: unknown if its request may have
                    # gone out, queued again (its attempt counted) if not.
                    log.exception("message.crashed")
                    state = "crashed"
            report.count(state)

    def _work(self, doc: Doc, directory: Directory) -> str:
        """One message's handling on a send worker; every problem becomes a state."""
        with bound_contextvars(message_id=str(doc["_id"]), campaign=doc.get("campaign")):
            try:
                if self.stopping:
                    self._release([doc])
                    return State.QUEUED.value
                return self._handle(doc, directory)
            except StoreUnavailable as exc:
                # Not sent (record writes outlast outages): handed back once the database returns.
                self._orphan([doc])
                self._failure = exc
                return "orphaned"
            except StoreRefused as exc:
                if document_fault(exc):
                    return self._refused(doc, exc)
                log.exception("message.crashed")
                return "crashed"
            except Exception:
                log.exception("message.crashed")  # settled by lease recovery, as in the cycle
                return "crashed"

    def _refused(self, doc: Doc, exc: StoreRefused) -> str:
        """The server cannot write this document (too large, a counter at its limit): it is
        rejected with the server's reason and the batch goes on."""
        claimed = {"state": State.SENDING.value, "claim_token": doc["claim_token"]}
        self.store.set_aside(doc["_id"], claimed, refusal(exc))
        return State.REJECTED.value

    def _orphan(self, docs: list[Doc]) -> None:
        with self._orphans_lock:
            self._orphans.extend(docs)

    def recover(self) -> int:
        """Settle documents whose worker died holding them."""
        return recovery.recover(self.store, self.clock, self.config)

    def admit(self, directory: Directory | None = None) -> int:
        """Validate new producer documents: each is queued or rejected with a reason, with its
        priority at most what its user's grant allows, and sealed."""
        grants = directory or self.directory
        docs = self.store.new_documents(limit=self.config.batch_size * 10)
        sealer = self.store.sealer
        for doc in docs:
            try:
                self._admit_one(doc, grants, sealer)
            except StoreRefused as exc:
                if not document_fault(exc):
                    raise
                self.store.set_aside(doc["_id"], {"state": None}, refusal(exc))
            except StoreError:
                raise
            except Exception as exc:
                # A document intake cannot even read costs that document, not the queue.
                log.exception("message.unreadable", message_id=str(doc["_id"]))
                self.store.set_aside(doc["_id"], {"state": None}, f"unreadable: {exc!r}"[:300])
        return len(docs)

    def _admit_one(self, doc: Doc, grants: Directory, sealer: Sealer | None) -> None:
        admission = intake.admit(doc, self.clock.now(), self.config.max_segments)
        admission = replay.guard(doc, admission)
        if admission.fields.get("priority", 0) > 0:
            user = admission.fields["user"]
            admission = intake.clamp_priority(admission, grants.max_priority(user))
        if sealer is not None:
            admitted = intake.stored(doc, admission)
            admission = replace(admission, seal=sealer.seal(admitted, seal.ADMITTED))
        if self.store.admit(doc["_id"], admission) is not None and admission.problem:
            log.info("message.rejected", message_id=str(doc["_id"]), reason=admission.problem.code)

    def _handle(self, doc: Doc, directory: Directory) -> str:
        if not self.store.trusts(doc):
            # Inserted with a state of its own: it has not been through intake, so it goes there.
            self.store.reintake(doc)
            return "reintake"
        # Route on `audience`, which is signed and is what intake reads, not on `kind`: anyone
        # who can write could turn a signed message into a broadcast by relabelling it.
        if "audience" in doc:
            return fanout.expand(
                self.store, directory, self.clock, self.config, doc, self._stopping.is_set,
                self.signatures,
            )  # fmt: skip
        return self._deliver(doc, directory)

    def _deliver(self, doc: Doc, directory: Directory) -> str:
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
        if self.stopping:
            self._release([doc])
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
        self._durably(lambda: self.store.finish_send(ticket, Outcome.SENT, provider_id))
        with bound_contextvars(provider_id=provider_id):
            self._record_sent(doc, provider_id, vetted.source)
        return State.SENT.value

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

    def _release(self, docs: list[Doc]) -> None:
        for doc in docs:
            self.store.release(doc)
        log.info("claim.released", count=len(docs))

    def _release_orphans(self) -> None:
        while True:
            with self._orphans_lock:
                if not self._orphans:
                    return
                orphan = self._orphans[0]
            # The outage may have cut off the answer to a ticket or spent-id insert that landed:
            # no request left, so say so, or the next claim would take this one for a copy.
            self.store.finish_send(SendTicket.of(orphan), Outcome.NOT_SENT)
            self.store.release(orphan)
            with self._orphans_lock:
                self._orphans.pop(0)  # workers only append

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


def summary(report: CycleReport) -> Mapping[str, Any]:
    """The report as log keys."""
    return {"admitted": report.admitted, "claimed": report.claimed, **report.outcomes}
