"""Operator interventions on MongoDB: cancelling what has not been sent and retrying what
failed, each write decided by the transition table (jobs/rules/changes.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.model import State
from jobs.mongo import writes
from jobs.mongo.documents import OutboxDocuments
from jobs.rules import changes, interventions, signing

Doc = dict[str, Any]

CANCEL_TRIES = 10


class OutboxInterventions(OutboxDocuments):
    """`cancel`, `cancel_campaign` and `retry`, each fenced on the state and revision read."""

    def cancel(self, doc: Mapping[str, Any], by: str) -> Doc | None:
        """End `doc` `cancelled` unless it was sent or claimed for sending meanwhile; a broadcast
        request being fanned out is taken from its daemon, whose next fenced write fails."""
        current: Mapping[str, Any] | None = doc
        # A daemon fanning the broadcast out renews it between our read and our write: read again.
        for _ in range(CANCEL_TRIES):
            change = None if current is None else changes.cancelled(current, by, self.clock.now())
            if change is None:
                return None
            done = self._commit(doc["_id"], change)
            if done is not None:
                self.mark_synced()
                return done
            current = self.find(doc["_id"])
        return None

    def cancel_campaign(self, campaign: str, by: str) -> int:
        """Cancel every message of a broadcast still queued; those in flight finish."""
        change = changes.cancelled({"state": State.QUEUED.value}, by, self.clock.now())
        assert change is not None
        result = self.outbox.update_many(
            {"campaign": campaign, **change.fence}, writes.update(change)
        )
        cancelled = list(
            self.outbox.find(
                {"campaign": campaign, "state": State.CANCELLED.value, "synced": False}
            )
        )
        self.project_many(cancelled)
        # A broadcast's recipients would otherwise stay at the head of the claim queue, each to
        # be tried and found cancelled before the messages behind them.
        self.queue.forget(cancelled)
        self.mark_synced()
        return int(result.modified_count)

    def retry(
        self, by: str, ids: list[Any] | None, campaign: str | None, reason: str | None
    ) -> list[Doc]:
        """Queue again the failed and unknown messages chosen, keeping their past in `history`."""
        retried = []
        for doc in self.outbox.find(interventions.retry_filter(ids, campaign, reason)):
            if doc.get("state") == State.UNKNOWN.value and "audience" not in doc:
                # The request may have left: the operator accepts a second text, so the spent
                # id is released for this message (before it is queued: a crash in between
                # leaves it unknown, and released for nothing else).
                spent_id = signing.signed_id(doc) or str(doc["_id"])
                self._spent.release(spent_id, doc["_id"], by=by, at=self.clock.now())
            new = self._commit(doc["_id"], changes.requeued(doc, by, self.clock.now()))
            if new is not None:
                retried.append(new)
        self.mark_synced()
        return retried
