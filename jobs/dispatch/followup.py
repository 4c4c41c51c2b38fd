"""Following up what was sent: the inbox step of each cycle, and the scheduled checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import structlog

from jobs.clock import Clock
from jobs.dispatch import receipts
from jobs.errors import InputError, NotConfirmedYet, StoreError
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.inbound import InboundLog
from jobs.mongo.inbox import Inbox
from jobs.records import MessageRecords
from jobs.rules import callbacks

log = structlog.get_logger("sms_outbox.followup")

InboundHandler = Callable[[Mapping[str, Any]], str]
# An inbound text whose Flowroute record is missing is tried again after this, doubling each
# time (a few lookups per forged text), for at most this long.
CONFIRM_RETRY = timedelta(seconds=5)
CONFIRM_HORIZON = timedelta(minutes=10)
Check = Callable[[], int]


class Followup:
    """Applies inbox entries (each cycle) and runs the scheduled checks (polling, reconciling)."""

    def __init__(
        self,
        delivery: DeliveryStore,
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

    def ensure_indexes(self) -> None:
        self.delivery.ensure_indexes()
        self.inbox.ensure_indexes()
        if self.inbound_log is not None:
            self.inbound_log.ensure_indexes()

    def apply_inbox(self) -> int:
        """Apply due inbox entries; each is marked with its outcome, one bad entry never stops
        the rest. Returns how many were looked at."""
        entries = self.inbox.due(self.clock.now(), self.config.batch_size)
        for entry in entries:
            kind = entry.get("kind")
            try:
                if kind == callbacks.DLR:
                    receipts.apply_dlr(self.delivery, self.inbox, self.clock, self.config, entry)
                elif kind == callbacks.INBOUND and self.inbound is not None:
                    self.inbox.applied(entry, self.clock.now(), self.inbound(entry))
                else:
                    raise InputError(f"no such callback kind: {str(kind)[:20]!r}")
            except NotConfirmedYet as exc:
                # Flowroute's record of the text is not there yet: applied again later.
                log.info("inbox.unconfirmed", entry=str(entry.get("_id")), reason=str(exc))
                tries = entry.get("tries")
                backoff = CONFIRM_RETRY * 2 ** min(tries if isinstance(tries, int) else 0, 4)
                self.inbox.wait(entry, self.clock.now(), backoff, CONFIRM_HORIZON)
            except InputError as exc:
                log.warning("inbox.invalid", entry=str(entry.get("_id")), reason=str(exc))
                self.inbox.applied(entry, self.clock.now(), "invalid")
            except StoreError:
                raise  # the cycle's outage handling applies; the entry is tried again
            except Exception:
                # One entry that trips a bug must not block every entry after it.
                log.exception("inbox.crashed", entry=str(entry.get("_id")))
                self.inbox.applied(entry, self.clock.now(), "crashed")
        if entries:
            self.delivery.store.mark_synced()  # the status copies of this step, in one write
        return len(entries)

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
