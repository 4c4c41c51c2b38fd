"""Following up what was sent: the inbox step of each cycle, and the scheduled checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from jobs.clock import Clock
from jobs.dispatch import receipts
from jobs.dispatch.confirm import Fate, Lookups, Step
from jobs.errors import InputError, StoreError, StoreRefused, document_fault, refusal
from jobs.ports import UNKNOWN_ID, Delivery, InboundLog, Inbox
from jobs.records import MessageRecords
from jobs.rules import callbacks

log = structlog.get_logger("sms_outbox.followup")

InboundHandler = Callable[[Mapping[str, Any], Lookups], Step]
Check = Callable[[], int]


class Followup:
    """Applies inbox entries (each cycle) and runs the scheduled checks (polling, reconciling)."""

    def __init__(
        self,
        delivery: Delivery,
        inbox: Inbox,
        clock: Clock,
        config: receipts.ReceiptConfig,
        records: MessageRecords | None = None,
        inbound: InboundHandler | None = None,
        checks: list[Check] | None = None,
        inbound_log: InboundLog | None = None,
    ) -> None:
        self.delivery = delivery
        self.inbox = inbox
        self.clock = clock
        self.config = config
        self.records = records
        self.inbound = inbound
        self.checks = checks or []
        self.inbound_log = inbound_log
        self.lookups = Lookups(records, config.confirm.lookups_per_cycle)

    def ensure_indexes(self) -> None:
        self.delivery.ensure_indexes()
        self.inbox.ensure_indexes()
        if self.inbound_log is not None:
            self.inbound_log.ensure_indexes()

    def apply_inbox(self) -> int:
        """Apply due inbox entries: inbound texts first (a STOP never waits behind receipts),
        then receipts (and anything else). Each is marked with what came of it, one bad entry
        never stops the rest, and at most a few record lookups are made per cycle. Returns how
        many were looked at."""
        self.lookups.start_cycle()
        seen = 0
        for only, besides in ((callbacks.INBOUND, None), (None, callbacks.INBOUND)):
            entries = self.inbox.due(self.clock.now(), self.config.batch_size, only, besides)
            for entry in entries:
                self._apply(entry)
            seen += len(entries)
        if seen:
            self.delivery.store.mark_synced()  # the status copies of this step, in one write
        return seen

    def _apply(self, entry: dict[str, Any]) -> None:
        kind = entry.get("kind")
        try:
            if kind == callbacks.DLR:
                step = receipts.apply_dlr(
                    self.delivery, self.clock, self.config, entry, self.lookups
                )
            elif kind == callbacks.INBOUND and self.inbound is not None:
                step = self.inbound(entry, self.lookups)
            else:
                raise InputError(f"no such callback kind: {str(kind)[:20]!r}")
        except InputError as exc:
            log.warning("inbox.invalid", entry=str(entry.get("_id")), reason=str(exc))
            step = Step("invalid")
        except StoreRefused as exc:
            if not document_fault(exc):
                raise
            # The server cannot take what this entry leads to: it is set aside, once.
            log.warning("inbox.invalid", entry=str(entry.get("_id")), reason=refusal(exc))
            step = Step("invalid_document", detail=refusal(exc))
        except StoreError:
            raise  # the cycle's outage handling applies; the entry is tried again
        except Exception:
            # One entry that trips a bug must not block every entry after it.
            log.exception("inbox.crashed", entry=str(entry.get("_id")))
            step = Step("crashed")
        self._settle(entry, step)

    def _settle(self, entry: dict[str, Any], step: Step) -> None:
        now = self.clock.now()
        if step.fate is Fate.DEFERRED:
            self.inbox.defer(entry, now)
        elif step.fate is Fate.WAITING:
            if step.outcome == UNKNOWN_ID:
                self.inbox.wait(entry, now, step.delay, self.config.unknown_id_horizon)
            else:
                self.inbox.wait(entry, now, step.delay, unconfirmed=step.detail or "")
        elif step.fate is Fate.UNVERIFIED:
            log.warning("callback.unverified", kind=entry.get("kind"),
                        entry=str(entry.get("_id")), detail=step.detail)  # fmt: skip
            self.inbox.set_aside(entry, now, step.outcome, step.detail)
        else:
            self.inbox.applied(entry, now, step.outcome or "applied", step.detail)

    def check(self) -> int:
        """The scheduled checks: polling for receipts, then any others (reconciling)."""
        done = 0
        if self.records is not None:
            done += receipts.poll(self.delivery, self.records, self.clock, self.config)
        for step in self.checks:
            done += step()
        if done:
            self.delivery.store.mark_synced()
        return done
