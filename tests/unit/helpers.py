"""Helpers the store and cycle tests share: documents as a producer writes them, and what the
outbox and the status projection hold."""

from __future__ import annotations

from typing import Any

from jobs.mongo.store import OutboxStore
from tests.unit.fakes import RECIPIENT


def submit(store: OutboxStore, **fields: Any) -> Any:
    """Insert a document as a producer would: no state, just what the producer wrote."""
    doc = {"user": "alice", "to": RECIPIENT, "body": "hello", **fields}
    return store.outbox.insert_one({k: v for k, v in doc.items() if v is not None}).inserted_id


def broadcast(store: OutboxStore, **fields: Any) -> Any:
    return submit(store, to=None, audience="verified", body="news", **fields)


def outbox(store: OutboxStore, doc_id: Any) -> dict[str, Any]:
    found = store.find(doc_id)
    assert found is not None
    return found


def status(store: OutboxStore, doc_id: Any) -> dict[str, Any]:
    found = store.status.find_one({"_id": doc_id})
    assert found is not None
    return found


def error_code(store: OutboxStore, doc_id: Any) -> str:
    return str(status(store, doc_id)["error"]["code"])
