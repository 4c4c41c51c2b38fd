"""The send cycle: recover, admit, claim a batch, and take each message through its steps."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from jobs.clock import Clock
from jobs.dispatch import admission, fanout, recovery
from jobs.dispatch.account_gate import AccountGate
from jobs.dispatch.config import DispatchConfig
from jobs.dispatch.grants import CycleDirectory
from jobs.dispatch.inflight import InFlight
from jobs.dispatch.sender import Sender, release
from jobs.errors import StoreRefused, StoreUnavailable, document_fault, refusal
from jobs.flowroute import SmsProvider
from jobs.keys import Signatures
from jobs.model import State
from jobs.pacing import Pacer
from jobs.ports import Directory, Doc, Outbox, Outcome, SendTicket

log = structlog.get_logger("sms_outbox.cycle")
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
        self._sender = Sender(
            store, self.gate, provider, pacer, clock, config, signatures, self._stopping.is_set
        )

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
        keep the workers busy plus one batch waiting for them. The more sends finished while
        the last cycle ran, the more this one claims, so a slow database costs fewer cycles
        rather than a lower rate; a claimed message still waits behind no more than
        `concurrency + batch_size` sends, which the lease is sized for."""
        if self._inflight is None:
            return self.config.batch_size
        room = self.config.concurrency + self.config.batch_size - self._inflight.count
        return max(0, room)

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
                release(self.store, batch[index:])
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
                    release(self.store, [doc])
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
        """Validate new producer documents (see jobs/dispatch/admission.py)."""
        grants = directory or self.directory
        return admission.admit(self.store, grants, self.clock, self.config)

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
        return self._sender.deliver(doc, directory)

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


def summary(report: CycleReport) -> Mapping[str, Any]:
    """The report as log keys."""
    return {"admitted": report.admitted, "claimed": report.claimed, **report.outcomes}
