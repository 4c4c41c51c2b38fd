"""Reconciling in-doubt sends with Flowroute's records: found is sent, provably absent is queued
again, anything else stays `unknown` and is looked at again later."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from jobs.clock import Clock
from jobs.errors import ProviderError, StoreRefused, document_fault, refusal
from jobs.model import Problem, Reason
from jobs.ports import Delivery, Directory, Doc, SendGuard
from jobs.records import MessageRecords
from jobs.rules import reconcile as rules
from jobs.rules import segments
from jobs.rules.callbacks import timestamp

log = structlog.get_logger("sms_outbox.reconcile")


@dataclass(frozen=True)
class ReconcileConfig:
    """The `[receipts]` settings reconciliation needs."""

    after: timedelta = timedelta(minutes=5)
    clock_skew: timedelta = timedelta(minutes=2)
    request_timeout: timedelta = timedelta(seconds=10)
    retry: timedelta = timedelta(minutes=1)
    visibility: timedelta = rules.VISIBILITY
    # A message Flowroute never had is sent again only while it is this fresh.
    resend_within: timedelta = timedelta(days=1)
    batch_size: int = 50


class Reconciler:
    """Settles `unknown` messages by listing Flowroute's records for their time window.

    What the outbox says (`state`, `updated_at`, `provider_id`) is anyone's to write, so the
    verdict rests on what only the daemon writes: a spent id that holds Flowroute's 202 is
    `found` without a lookup and never released, and the window to search is made of the
    times the requests were spent (and their tickets). With no spent record, no request of the
    message ever left (one is recorded before every request), so it is absent without a lookup.
    """

    def __init__(
        self,
        delivery: Delivery,
        guard: SendGuard,
        spans: Callable[[Any], list[tuple[datetime, datetime | None]]],
        release: Callable[[Doc], bool],
        directory: Directory,
        records: MessageRecords,
        clock: Clock,
        config: ReconcileConfig,
        spent: Callable[[Doc], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.delivery = delivery
        self.guard = guard
        self.spans = spans
        self.release = release
        self.directory = directory
        self.records = records
        self.clock = clock
        self.config = config
        self.spent = spent

    def __call__(self) -> int:
        now = self.clock.now()
        docs = self.delivery.in_doubt(now, self.config.after, self.config.batch_size)
        for doc in docs:
            if not self.delivery.store.trusts(doc):
                # Made `unknown` by someone else's insert: intake decides what it is.
                self.delivery.store.reintake(doc)
                continue
            with bound_contextvars(message_id=str(doc["_id"])):
                try:
                    self._one(doc, now)
                except StoreRefused as exc:
                    if not document_fault(exc):
                        raise
                    # Its spent id stays as it is: setting it aside never sends it again.
                    self.delivery.store.set_aside(doc["_id"], {"state": "unknown"}, refusal(exc))
        return len(docs)

    def _one(self, doc: Doc, now: datetime) -> None:
        bound = log.bind(message_id=str(doc["_id"]))
        record = self.spent(doc) if self.spent is not None else None
        attempts = self.spans(doc["_id"]) + rules.ledger_spans(record)
        verdict = self.guard.verdict(doc)
        accepted = verdict.provider_id or rules.ledger_provider_id(record)
        if accepted is not None:
            # A request was accepted and the daemon's own record says so: no lookup needed.
            source = "send ticket" if verdict.provider_id else "spent id"
            evidence: dict[str, Any] = {"at": now, "verdict": rules.FOUND, "source": source}
            self.delivery.found(doc, accepted, evidence)
            bound.info("message.reconciled", verdict=rules.FOUND, provider_id=accepted)
            return
        if not attempts and self.spent is not None:
            # No request of it ever left: absent, without a lookup. Its age can only be judged
            # from the outbox, which at worst makes a message that was never sent fail.
            updated = doc.get("updated_at")
            end = updated if isinstance(updated, datetime) else now
            span = rules.Window(end, end)
            self._absent(doc, now, span, {"at": now, "verdict": rules.ABSENT, "records_seen": 0})
            bound.info("message.reconciled", verdict=rules.ABSENT, source="no spent id")
            return
        span = self._window(doc, attempts)
        evidence = {"at": now, "window": [span.start, span.end]}
        to, body = str(doc.get("to")), segments.normalize_text(str(doc.get("body", "")))
        sender = doc.get("from")
        sources = (
            {sender}
            if isinstance(sender, str)
            else set(self.directory.sources_for(str(doc.get("user"))))
        )
        try:
            seen, found = self._search(doc["_id"], to, sources, body, span)
        except ProviderError as error:
            evidence.update(verdict="lookup_failed", detail=f"{error.code}: {error.detail}")
            self.delivery.undecided(doc, now + self.config.retry, evidence)
            bound.warning("message.reconcile_failed", code=error.code)
            return
        decision = rules.decide(found, span, now, self.config.visibility)
        evidence.update(verdict=decision, records_seen=seen)
        if decision == rules.FOUND:
            # Another in-doubt message with the same text may claim the same record: the oldest
            # record goes to whichever is reconciled first, never to two.
            record_id, record_time = found[0]
            evidence.update(record_id=record_id, record_time=record_time, matches=len(found))
            self.delivery.found(doc, record_id, evidence)
        elif decision == rules.ABSENT:
            self._absent(doc, now, span, evidence)
        else:
            self.delivery.undecided(doc, now + self.config.retry, evidence)
        bound.info("message.reconciled", verdict=decision, records_seen=seen)

    def _window(self, doc: Doc, attempts: list[tuple[datetime, datetime | None]]) -> rules.Window:
        """The daemon-written span of the message's requests; only when no spent ids are wired
        in (`spent` None) does the outbox's `updated_at` stand in for them."""
        updated = doc.get("updated_at")
        fallback = updated if isinstance(updated, datetime) else self.clock.now()
        return rules.window(attempts, fallback, self.config.clock_skew, self.config.request_timeout)

    def _absent(self, doc: Doc, now: datetime, span: rules.Window, evidence: Doc) -> None:
        if now - span.end > self.config.resend_within:
            detail = "Flowroute has no record of it, and it is too old to send now"
            self.delivery.too_old(doc, evidence, Problem(Reason.RECONCILED, detail))
        elif self.release(doc):  # its in-doubt request no longer counts as a send
            detail = "Flowroute has no record of it in its time window; queued again"
            self.delivery.absent(doc, evidence, Problem(Reason.RECONCILED, detail))
        else:
            # Its spent id holds a 202 after all: it was sent and is never queued again.
            log.warning("message.kept_spent", message_id=str(doc["_id"]))
            self.delivery.undecided(doc, now + self.config.retry, evidence)

    def _search(
        self, doc_id: Any, to: str, sources: set[str], body: str, span: rules.Window
    ) -> tuple[int, list[tuple[str, datetime | None]]]:
        seen, found = 0, []
        for record in self.records.between(span.start, span.end):
            seen += 1
            record_id = record.get("id")
            if not isinstance(record_id, str) or not rules.matches(record, to, sources, body, span):
                continue
            # A record another message holds is that message's; one this message still holds
            # is its own (a writer may have set it back to `unknown`).
            holder = self.delivery.by_provider_id(record_id)
            if holder is None or holder.get("_id") == doc_id:
                found.append((record_id, timestamp(record.get("timestamp"))))
        return seen, found
