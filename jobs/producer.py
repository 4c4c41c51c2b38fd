"""Producing messages: the same checks and document shape the daemon expects, for the CLI and
for Python producers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobs.dispatch.ports import Doc, Outbox
from jobs.errors import DuplicateKey, InputError
from jobs.model import BROADCAST_AUDIENCE
from jobs.rules import intake, signing


@dataclass(frozen=True)
class Enqueued:
    """The id of the outbox document; `created` is False when its key was already queued."""

    id: Any
    created: bool


def _insert(
    store: Outbox, doc: Doc, now: datetime, sign_key: Callable[[], str] | str | None
) -> Enqueued:
    admission = intake.admit(doc, now)
    if admission.problem is not None:
        raise InputError(admission.problem.detail, admission.problem.code)
    # Store what the producer said, normalised; the daemon sets state and due time at intake.
    fields = {k: v for k, v in admission.fields.items() if k in intake.PRODUCER_FIELDS}
    if doc.get("send_at") is not None:
        fields["send_at"] = doc["send_at"]
    # The id is made here, not by the server, because the signature covers it.
    fields["_id"] = store.new_id()
    if sign_key is not None:
        key = sign_key() if callable(sign_key) else sign_key
        fields["signature"] = signing.sign(key, fields)
    try:
        return Enqueued(store.insert(fields), True)
    except DuplicateKey:
        existing = store.find_by_key(str(doc["key"]))
        if existing is None:
            raise
        return Enqueued(existing["_id"], False)


def enqueue(
    store: Outbox,
    *,
    user: str,
    to: str | None,
    body: str,
    now: datetime,
    source: str | None = None,
    key: str | None = None,
    send_at: datetime | None = None,
    priority: int | None = None,
    sign_key: Callable[[], str] | str | None = None,
    audience: str | None = None,
) -> Enqueued:
    """Queue one message (or, with `audience`, a broadcast), signed with `sign_key` or the key
    it returns, fetched once the message is known to be valid. Raises InputError with the
    reason when the daemon would reject it."""
    doc: Doc = {"user": user, "to": to, "audience": audience, "body": body, "from": source}
    doc.update(key=key, send_at=send_at, priority=priority)
    return _insert(store, {k: v for k, v in doc.items() if v is not None}, now, sign_key)


def broadcast(store: Outbox, **fields: Any) -> Enqueued:
    """Queue a broadcast to every verified recipient; its id is the campaign id. Takes the
    keyword arguments of `enqueue`, without `to`."""
    return enqueue(store, to=None, audience=BROADCAST_AUDIENCE, **fields)
