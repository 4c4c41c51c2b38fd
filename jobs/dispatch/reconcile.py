"""Reconciling in-doubt sends with Flowroute's records: found is sent, provably absent is queued
again, anything else stays `unknown` and is looked at again later."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobs.clock import Clock
from jobs.dispatch.ports import SendGuard
from jobs.errors import ProviderError
from jobs.model import Problem, Reason
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc
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
    """Settles `unknown` messages by listing Flowroute's records for their time window."""

    def __init__(
        self,
        delivery: DeliveryStore,
        guard: SendGuard,
        spans: Callable[[Any], list[tuple[datetime, datetime | None]]],
        release: Callable[[Doc], None],
        directory: Directory,
        records: MessageRecords,
        clock: Clock,
        config: ReconcileConfig,
    ) -> None:
        self.delivery = delivery
        self.guard = guard
        self.spans = spans
        self.release = release
        self.directory = directory
        self.records = records
        self.clock = clock
        self.config = config

    def __call__(self) -> int:
        now = self.clock.now()
        docs = self.delivery.in_doubt(now, self.config.after, self.config.batch_size)
        for doc in docs:
            if not self.delivery.store.trusts(doc):
                # Made `unknown` by someone else's insert: intake decides what it is.
                self.delivery.store.reintake(doc)
                continue
            self._one(doc, now)
        return len(docs)

    def _window(self, doc: Doc) -> rules.Window:
        saved = doc.get("reconciliation")
        # The window of this same doubt, saved when it could not be settled yet; one saved with
        # a verdict belongs to an earlier attempt, and this doubt gets a window of its own.
        pending = isinstance(saved, dict) and saved.get("verdict") in (rules.WAIT, "lookup_failed")
        span = saved.get("window") if isinstance(saved, dict) and pending else None
        if isinstance(span, list) and len(span) == 2 and all(isinstance(t, datetime) for t in span):
            return rules.Window(span[0], span[1])
        attempts = self.spans(doc["_id"])
        updated = doc.get("updated_at")
        fallback = updated if isinstance(updated, datetime) else self.clock.now()
        return rules.window(attempts, fallback, self.config.clock_skew, self.config.request_timeout)

    def _one(self, doc: Doc, now: datetime) -> None:
        bound = log.bind(message_id=str(doc["_id"]))
        span = self._window(doc)
        evidence: dict[str, Any] = {"at": now, "window": [span.start, span.end]}
        verdict = self.guard.verdict(doc)
        if verdict.provider_id is not None:
            # A request was accepted and its ticket says so: no lookup needed.
            evidence.update(verdict=rules.FOUND, source="send ticket")
            self.delivery.found(doc, verdict.provider_id, evidence)
            bound.info("message.reconciled", verdict=rules.FOUND, provider_id=verdict.provider_id)
            return
        to, body = str(doc.get("to")), segments.normalize_text(str(doc.get("body", "")))
        source = doc.get("from")
        sources = (
            {source}
            if isinstance(source, str)
            else set(self.directory.sources_for(str(doc.get("user"))))
        )
        try:
            seen, found = self._search(to, sources, body, span)
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
        elif decision == rules.ABSENT and now - span.end > self.config.resend_within:
            detail = "Flowroute has no record of it, and it is too old to send now"
            self.delivery.too_old(doc, evidence, Problem(Reason.RECONCILED, detail))
        elif decision == rules.ABSENT:
            detail = "Flowroute has no record of it in its time window; queued again"
            self.release(doc)  # its in-doubt request no longer counts as a send
            self.delivery.absent(doc, evidence, Problem(Reason.RECONCILED, detail))
        else:
            self.delivery.undecided(doc, now + self.config.retry, evidence)
        bound.info("message.reconciled", verdict=decision, records_seen=seen)

    def _search(
        self, to: str, sources: set[str], body: str, span: rules.Window
    ) -> tuple[int, list[tuple[str, datetime | None]]]:
        seen, found = 0, []
        for record in self.records.between(span.start, span.end):
            seen += 1
            record_id = record.get("id")
            if not isinstance(record_id, str) or not rules.matches(record, to, sources, body, span):
                continue
            if self.delivery.by_provider_id(record_id) is None:
                found.append((record_id, timestamp(record.get("timestamp"))))
        return seen, found
