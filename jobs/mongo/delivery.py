"""Writes after the send: receipts, polling progress and in-doubt verdicts on outbox documents.

None of these are claimed, so instead of a claim token every write is guarded on the revision it
was computed from; a write that lost a race reads the document again and recomputes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument

from jobs import metrics
from jobs.model import Problem, State
from jobs.mongo.connection import adapter
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from jobs.ports import APPLIED, DUPLICATE, KEPT, UNKNOWN_ID
from jobs.rules import receipts

RACE_RETRIES = 5
# Documents read for one provider id: the real message and a few others claiming its id.
PROVIDER_ID_CANDIDATES = 10


@adapter
class DeliveryStore:
    """What happens to a message after Flowroute accepted it (or may have)."""

    def __init__(self, store: OutboxStore, directory: Directory | None = None) -> None:
        self.store = store
        self.directory = directory
        self.outbox = store.outbox
        self.clock = store.clock

    def ensure_indexes(self) -> None:
        self.outbox.create_index("provider_id", name="provider_id", sparse=True)

    def guarded(self, doc: Mapping[str, Any], update: Doc) -> Doc | None:
        """Apply `update` if `doc` is unchanged since it was read; project and return it."""
        update.setdefault("$set", {}).update(updated_at=self.clock.now(), synced=False)
        update.setdefault("$inc", {})["rev"] = 1
        new = self.outbox.find_one_and_update(
            {"_id": doc["_id"], "rev": doc.get("rev")}, update, return_document=ReturnDocument.AFTER
        )
        if new is not None:
            self.store.project(new)
        return new

    def by_provider_id(self, provider_id: str) -> Doc | None:
        """The message Flowroute gave this id. A document the daemon did not seal is never it,
        whatever `provider_id` its writer gave it (a receipt must not reach, or opt out, the
        number of a document someone inserted beside the real one)."""
        found = self.outbox.find({"provider_id": provider_id}).limit(PROVIDER_ID_CANDIDATES)
        return next((doc for doc in found if self.store.trusts(doc)), None)

    def apply_receipt(self, receipt: Mapping[str, Any]) -> tuple[str, State | None]:
        """Fold a receipt into its message: the outcome and the state it moved to, if any."""
        for _ in range(RACE_RETRIES):
            doc = self.by_provider_id(str(receipt["provider_id"]))
            if doc is None:
                return UNKNOWN_ID, None
            kept = doc.get("receipts")
            kept = [r for r in kept if isinstance(r, dict)] if isinstance(kept, list) else []
            change = receipts.apply(str(doc.get("state")), kept, receipt)
            if change is None:
                return DUPLICATE, None
            fields: Doc = {"receipts": change.receipts}
            if change.state is not None:
                when = receipt.get("timestamp") or self.clock.now()
                fields.update(state=change.state.value, final_at=when)
                if change.state is State.DELIVERED:
                    fields["delivered_at"] = when
                if change.problem is not None:
                    fields["error"] = change.problem.as_error()
            if self.guarded(doc, {"$set": fields}) is not None:
                if receipt.get("status_code") == receipts.OPTED_OUT_CODE:
                    self._opted_out(doc)
                return (APPLIED if change.state else KEPT), change.state
        return KEPT, None

    def _opted_out(self, doc: Mapping[str, Any]) -> None:
        """A 1110 receipt: the recipient texted STOP to the sending number; for us, that is an
        opt-out from every number."""
        to = doc.get("to")
        if self.directory is not None and isinstance(to, str):
            self.directory.opt_out(to, now=self.clock.now(), reason="flowroute 1110 receipt")
            metrics.opted_out("receipt_1110")

    # Polling

    def awaiting_receipt(
        self, now: datetime, after: timedelta, horizon: timedelta, limit: int
    ) -> list[Doc]:
        """Sent messages with no final receipt whose next lookup is due; those sent before the
        horizon (older installs' messages among them) are never looked up."""
        query = {
            "state": State.SENT.value,
            "sent_at": {"$lte": now - after, "$gte": now - horizon},
            "poll_done": {"$ne": True},
            "$or": [{"poll_at": {"$exists": False}}, {"poll_at": {"$lte": now}}],
        }
        return list(self.outbox.find(query).sort("sent_at", ASCENDING).limit(limit))

    def polled(self, doc: Mapping[str, Any], next_at: datetime | None) -> Doc | None:
        """Note a lookup; `next_at` None means the horizon is past and polling stops."""
        polls = doc.get("polls")
        count = polls + 1 if isinstance(polls, int) and not isinstance(polls, bool) else 1
        fields: Doc = {"polls": count}
        fields.update({"poll_done": True} if next_at is None else {"poll_at": next_at})
        return self.guarded(doc, {"$set": fields})

    # In-doubt sends

    def in_doubt(self, now: datetime, after: timedelta, limit: int) -> list[Doc]:
        """Messages left `unknown` long enough ago, whose next reconciliation is due."""
        query = {
            "state": State.UNKNOWN.value,
            "updated_at": {"$lte": now - after},
            "$or": [{"reconcile_at": {"$exists": False}}, {"reconcile_at": {"$lte": now}}],
        }
        return list(self.outbox.find(query).limit(limit))

    def found(self, doc: Mapping[str, Any], provider_id: str, evidence: Doc) -> Doc | None:
        """Flowroute has the message: it was sent, with this id."""
        return self.guarded(
            doc,
            {
                "$set": {
                    "state": State.SENT.value, "provider_id": provider_id,
                    "sent_at": evidence.get("record_time") or self.clock.now(),
                    "reconciliation": evidence,
                },
                "$unset": {"error": "", "reconcile_at": ""},
            },
        )  # fmt: skip

    def absent(self, doc: Mapping[str, Any], evidence: Doc, problem: Problem) -> Doc | None:
        """Flowroute never had it: queue it again, now (this revision guard makes it once)."""
        return self.guarded(
            doc,
            {
                "$set": {
                    "state": State.QUEUED.value, "due_at": self.clock.now(),
                    "reconciliation": evidence, "error": problem.as_error(),
                },
                "$unset": {"reconcile_at": "", "last_claim_token": ""},
            },
        )  # fmt: skip

    def too_old(self, doc: Mapping[str, Any], evidence: Doc, problem: Problem) -> Doc | None:
        """Flowroute never had it, and it is too late to send it now: failed, with why."""
        return self.guarded(
            doc,
            {"$set": {"state": State.FAILED.value, "reconciliation": evidence,
                      "error": problem.as_error()},
             "$unset": {"reconcile_at": ""}},
        )  # fmt: skip

    def undecided(self, doc: Mapping[str, Any], retry_at: datetime, evidence: Doc) -> Doc | None:
        """Not provable yet (or the lookup failed): stay unknown and look again later."""
        return self.guarded(doc, {"$set": {"reconcile_at": retry_at, "reconciliation": evidence}})
