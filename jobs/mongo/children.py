"""A broadcast's messages on MongoDB: inserting what a fan-out made, skipping what is there,
and replacing a document someone else put at one of their ids."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from jobs.model import State
from jobs.mongo import poison
from jobs.mongo.documents import OutboxDocuments
from jobs.mongo.poison import caused_by_document
from jobs.rules import seal

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")


class OutboxChildren(OutboxDocuments):
    """`add_children` and what the fan-out asks about a broadcast."""

    def add_children(self, children: Iterable[Doc]) -> list[Doc]:
        """Insert a broadcast's messages; those already there (a resumed fan-out) are skipped,
        and so is one the server refuses for its content, which costs that message only."""
        docs = list(children)
        if not docs:
            return []
        try:
            self.outbox.insert_many(docs, ordered=False)
            inserted = docs
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            refused = [err for err in errors if err.get("code") != 11000]
            if any(not poison.refused_for_itself(err) for err in refused):
                raise
            for err in refused:
                self._child_refused(docs[err["index"]], str(err.get("errmsg")))
            skipped = {err["index"] for err in errors}
            inserted = [doc for i, doc in enumerate(docs) if i not in skipped]
            taken = [docs[err["index"]] for err in errors if err.get("code") == 11000]
            inserted += self._replace_squatters(taken)
        except OperationFailure as exc:
            # The server refused the whole insert (a message past the size limit): one by one.
            if not caused_by_document(exc):
                raise
            added = {doc["_id"]: self._add_child(doc) for doc in docs}
            inserted = [doc for doc in docs if added[doc["_id"]] is True]
            inserted += self._replace_squatters([d for d in docs if added[d["_id"]] is None])
        self.project_new(inserted)
        return inserted

    def _add_child(self, doc: Doc) -> bool | None:
        """True if inserted, None if its id is taken, False if the server refused it."""
        try:
            self.outbox.insert_one(doc)
        except DuplicateKeyError:
            return None
        except OperationFailure as exc:
            if not caused_by_document(exc):
                raise
            self._child_refused(doc, poison.server_reason(exc))
            return False
        return True

    def _child_refused(self, doc: Doc, why: str) -> None:
        log.warning("child.refused", message_id=str(doc["_id"])[:80], detail=why[:300])

    def _replace_squatters(self, made: list[Doc]) -> list[Doc]:
        """The daemon's messages whose ids someone else's documents took first (a producer can
        insert `<campaign>:<number>` before the fan-out does): a document the daemon did not
        make there is replaced, so it suppresses nobody. Returns the messages put in place."""
        if self._sealer is None or not made:
            return []
        there = {d["_id"]: d for d in self.outbox.find({"_id": {"$in": [m["_id"] for m in made]}})}
        replaced = []
        for doc in made:
            squatter = there.get(doc["_id"])
            if squatter is None or self._sealer.sealed(squatter, seal.MADE):
                continue
            fence = {"_id": doc["_id"], "seal": squatter.get("seal")}
            if self.outbox.replace_one(fence, doc).modified_count == 1:
                log.warning("message.squatter_replaced", message_id=str(doc["_id"]))
                replaced.append(doc)
        return replaced

    def fanning_out(self) -> bool:
        """Whether a daemon holds a broadcast request it is still fanning out."""
        query = {"state": State.SENDING.value, "kind": "broadcast"}
        return self.outbox.find_one(query, {"_id": 1}) is not None

    def count_children(self, campaign: str) -> int:
        """How many messages a broadcast has fanned out to."""
        # Counted here rather than with count_documents, which needs aggregation.
        query = {"campaign": campaign, "kind": "message"}
        return sum(1 for _ in self.outbox.find(query, {"_id": 1}))
