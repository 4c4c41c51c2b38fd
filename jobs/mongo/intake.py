"""Intake on MongoDB: the documents producers inserted, their admission one by one or in bulk,
and setting aside a document the server cannot update."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from jobs.errors import StoreRefused, document_fault
from jobs.mongo import poison, writes
from jobs.mongo.documents import OutboxDocuments
from jobs.rules import changes, transitions
from jobs.rules.intake import Admission, duplicate_key

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")


class OutboxIntake(OutboxDocuments):
    """New documents: read, admitted (their first state) or set aside."""

    def new_documents(self, limit: int) -> list[Doc]:
        """Documents producers inserted that the daemon has not looked at yet. One larger than
        `poison.MAX_PRODUCER_BYTES` is measured on the server and rejected unread."""
        query = {"state": None}
        try:
            docs = poison.sized(self.outbox, query, limit)
        except (NotImplementedError, OperationFailure):  # a server without $bsonSize
            return list(self.outbox.find(query).limit(limit))
        fresh = []
        for doc in docs:
            if "_bytes" not in doc:
                fresh.append(doc)
                continue
            detail = f"{doc['_bytes']} bytes; a document may hold {poison.MAX_PRODUCER_BYTES}"
            try:
                self.set_aside(doc["_id"], {"state": None}, "too large: " + detail)
            except StoreRefused as exc:
                if not document_fault(exc):
                    raise
                log.error("message.stuck", message_id=str(doc["_id"]), error=str(exc))
        return fresh

    def set_aside(self, doc_id: Any, expected: Mapping[str, Any], detail: str) -> Doc | None:
        """Reject a document the server cannot update as the step needs (see jobs/mongo/poison),
        if it still matches `expected`; None when it no longer does."""
        new = poison.set_aside(self.outbox, self.status, doc_id, expected, detail, self.clock.now())
        if new is not None and self.trusts(new):
            self.project(new)
        elif new is not None:
            self.projection.project_refused(new)  # refused before intake could seal it
        return new

    def admit(self, doc_id: Any, admission: Admission) -> Doc | None:
        """Give a new document its first state; None if another daemon admitted it first."""
        key = admission.fields.get("key")
        if key is not None and admission.problem is None:
            admission = self._unique_key(doc_id, admission.fields["user"], key, admission)
        return self._commit(doc_id, changes.admitted(admission, self.clock.now()))

    def admit_many(self, admitted: list[tuple[Doc, Admission]]) -> list[tuple[Any, StoreRefused]]:
        """Give many new documents their first state in one unordered bulk write, and their
        status copies in another: thousands of documents, valid or not, cost a few commands.
        One with an idempotency key goes through `admit`, which checks the key. Returns the
        documents the server refused for their content, each with its refusal, to be set aside;
        the others are admitted (or were, by another daemon)."""
        refused: list[tuple[Any, StoreRefused]] = []
        plain: list[tuple[Doc, Admission]] = []
        for doc, admission in admitted:
            if admission.fields.get("key") is None or admission.problem is not None:
                plain.append((doc, admission))
                continue
            try:
                self.admit(doc["_id"], admission)
            except StoreRefused as exc:
                if not document_fault(exc):
                    raise
                refused.append((doc["_id"], exc))
        if plain:
            refused += self._admit_plain(plain)
        return refused

    def _admit_plain(self, plain: list[tuple[Doc, Admission]]) -> list[tuple[Any, StoreRefused]]:
        """`admit_many` for documents without a key, in one bulk write."""
        refused: list[tuple[Any, StoreRefused]] = []
        now = self.clock.now()
        made = [changes.admitted(admission, now) for _, admission in plain]
        pairs = zip(plain, made, strict=True)
        ops = [UpdateOne(writes.fence(d["_id"], c), writes.update(c)) for (d, _), c in pairs]
        try:
            matched = self.outbox.bulk_write(ops, ordered=False).matched_count
            failed: set[int] = set()
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(not poison.refused_for_itself(err) for err in errors):
                raise
            failed = {err["index"] for err in errors}
            for err in errors:
                why = StoreRefused(str(err.get("errmsg")), err.get("code"), err)
                refused.append((plain[err["index"]][0]["_id"], why))
            matched = int(exc.details.get("nMatched", 0))
        done = [(plain[i][0], made[i]) for i in range(len(plain)) if i not in failed]
        if matched == len(done):
            # Every one was ours to admit: their new state is known without reading it back.
            self.project_many([transitions.applied(doc, change) for doc, change in done])
        else:
            # Another daemon admitted some first: copy what the outbox now holds of them all.
            ids = [doc["_id"] for doc, _ in done]
            self.project_many(self.outbox.find({"_id": {"$in": ids}, "state": {"$ne": None}}))
        return refused

    def _unique_key(self, doc_id: Any, user: str, key: str, admission: Admission) -> Admission:
        """Backs up the unique index: a key the same user already had admitted makes this
        document a duplicate."""
        query = {"user": user, "key": key, "_id": {"$ne": doc_id}, "state": {"$ne": None}}
        other = self.outbox.find_one(query)
        return admission if other is None else duplicate_key(admission, other["_id"])
