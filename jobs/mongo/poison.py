"""Poison documents: which server refusals a document itself can cause, and setting such a
document aside with the smallest write the server still accepts, so the next one is served.

A document anyone could write (an Int64 counter at its maximum, a body just under 16 MiB, a
field of the wrong type) can make every update of it fail. The step that met it rejects it with
the server's own words (`invalid_document`), and when even that write is too large, removes the
document's largest fields to make room, naming them in the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, OperationFailure

from jobs.errors import (
    NOT_THE_DOCUMENT,
    REFUSAL_CHARS,
    StoreError,
    StoreRefused,
    document_fault,
    refusal,
)
from jobs.model import STATUS_FIELDS
from jobs.mongo import writes
from jobs.rules import changes, seal
from jobs.rules.transitions import Change

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.poison")

# A producer's document is a few hundred bytes; a broadcast request a few KiB. Anything past
# this is refused unread (see `sized`), whatever it holds.
MAX_PRODUCER_BYTES = 64 * 1024
# When even a rejection does not fit, the largest fields are removed until this much is freed
# (the rejection itself needs well under 1 KiB).
ROOM_BYTES = 8 * 1024
# What a set-aside write returns: what its status copy needs, not the whole document.
# What a set-aside returns: the status fields, and what its seal is checked against.
STATUS_ONLY = dict.fromkeys((*STATUS_FIELDS, *seal.SEALED_FIELDS, "seal"), 1)


def caused_by_document(exc: BaseException) -> bool:
    """`jobs.errors.document_fault` for pymongo's own errors: a server refusal a document's
    content can cause (a type, an overflow, a size), not an outage, permission or duplicate."""
    if isinstance(exc, StoreError):
        return document_fault(exc)
    if isinstance(exc, DuplicateKeyError) or not isinstance(exc, OperationFailure):
        return False
    return isinstance(exc.code, int) and exc.code not in NOT_THE_DOCUMENT


def refused_for_itself(write_error: Mapping[str, Any]) -> bool:
    """Whether one write error of a bulk write is a refusal of that document's content."""
    code = write_error.get("code")
    return isinstance(code, int) and code not in NOT_THE_DOCUMENT


def server_reason(exc: OperationFailure) -> str:
    """The server's explanation of a refusal, short enough to store."""
    return refusal(StoreRefused(str(exc), exc.code, exc.details))


def sized(outbox: Collection[Doc], query: Mapping[str, Any], limit: int) -> list[Doc]:
    """Up to `limit` documents matching `query`, each whole unless it is larger than
    `MAX_PRODUCER_BYTES`: such a one comes back as its `_id` and `_bytes` alone, measured on the
    server, so a 16 MiB insert is never loaded to be refused."""
    too_big = {"$gt": [{"$bsonSize": "$$ROOT"}, MAX_PRODUCER_BYTES]}
    stub = {"_id": "$_id", "_bytes": {"$bsonSize": "$$ROOT"}}
    pipeline: list[Doc] = [
        {"$match": dict(query)},
        {"$limit": limit},
        {"$replaceRoot": {"newRoot": {"$cond": [too_big, stub, "$$ROOT"]}}},
    ]
    return list(outbox.aggregate(pipeline))


def field_sizes(outbox: Collection[Doc], doc_id: Any) -> dict[str, int]:
    """The encoded size of each top-level field of one document, read on the server."""
    pipeline: list[Doc] = [
        {"$match": {"_id": doc_id}},
        {"$project": {"_id": 0, "fields": {"$map": {
            "input": {"$objectToArray": "$$ROOT"},
            "in": {"k": "$$this.k", "n": {"$bsonSize": {"$arrayToObject": [["$$this"]]}}},
        }}}},
    ]  # fmt: skip
    for found in outbox.aggregate(pipeline):
        return {str(f["k"]): int(f["n"]) for f in found.get("fields", []) if "k" in f}
    return {}


def set_aside(
    outbox: Collection[Doc],
    status: Collection[Doc],
    doc_id: Any,
    expected: Mapping[str, Any],
    detail: str,
    now: datetime,
) -> Doc | None:
    """Reject `doc_id` (still matching `expected`) as `invalid_document` with `detail`; returns
    its status fields, or None when it no longer matched or the transition table refuses it.
    Counters are set, never incremented (an overflowing `$inc` may be what failed); a document
    too large for even this loses its largest fields first."""
    last = (status.find_one({"_id": doc_id}, {"rev": 1}) or {}).get("rev")
    try:
        return _write(outbox, doc_id, changes.set_aside(expected, last, detail, now))
    except OperationFailure as exc:
        if not caused_by_document(exc):
            raise
        big = _largest(field_sizes(outbox, doc_id))
        if not big:
            raise
        dropped = ", ".join(f"{k} ({n} bytes)" for k, n in big[:5])
        more = f" and {len(big) - 5} more" if len(big) > 5 else ""
        detail = f"{detail}; fields removed to make room: {dropped}{more}"[:REFUSAL_CHARS]
        room = changes.set_aside(expected, last, detail, now, drop=[k for k, _ in big])
        return _write(outbox, doc_id, room)


def _largest(sizes: Mapping[str, int]) -> list[tuple[str, int]]:
    """The fields to remove, largest first, until `ROOM_BYTES` are freed (never `_id`, and
    never a name the server would read as a path or an operator)."""
    chosen: list[tuple[str, int]] = []
    freed = 0
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        if name == "_id" or "." in name or name.startswith("$") or not name:
            continue
        chosen.append((name, size))
        freed += size
        if freed >= ROOM_BYTES:
            break
    return chosen


def _write(outbox: Collection[Doc], doc_id: Any, change: Change | None) -> Doc | None:
    if change is None:
        return None
    new = outbox.find_one_and_update(
        writes.fence(doc_id, change),
        writes.update(change),
        projection=STATUS_ONLY,
        return_document=ReturnDocument.AFTER,
    )
    if new is not None:
        detail = change.fields["error"]["detail"]
        log.warning("message.set_aside", message_id=str(doc_id), detail=detail)
    return new


def minimal_copy(doc: Mapping[str, Any]) -> Doc:
    """The status copy of a document whose full copy the server refused: its state, its
    reason and its revision, each only if it has the expected type."""
    kept: Doc = {}
    for name, kind in (("state", str), ("kind", str), ("error", dict), ("rev", int)):
        value = doc.get(name)
        if isinstance(value, kind) and len(str(value)) <= REFUSAL_CHARS * 2:
            kept[name] = value
    gone = {k: "" for k in STATUS_FIELDS if k not in kept}
    return {"$set": kept, "$unset": gone}
