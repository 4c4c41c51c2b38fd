"""Producing messages: the same checks and document shape the daemon expects, for the CLI and
for Python producers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobs.clock import as_utc
from jobs.errors import DuplicateKey, InputError
from jobs.model import BROADCAST_AUDIENCE
from jobs.ports import Directory, Doc, Outbox
from jobs.rules import intake, policy, signing

# What makes two documents with one key the same message.
_CONTENT = ("user", "to", "from", "body", "send_at", "priority", "audience")


@dataclass(frozen=True)
class Enqueued:
    """The id of the outbox document; `created` is False when its key was already queued."""

    id: Any
    created: bool


def vet(directory: Directory, fields: Doc) -> None:
    """Refuse now what the daemon would refuse at send time (it checks again then): a user
    with no grant, a `from` the user was not granted, a recipient without consent."""
    decision = policy.choose_source(
        fields["user"], fields.get("from"), directory.sources_for(fields["user"])
    )
    problem = decision.problem
    if problem is None and fields.get("to") is not None:
        problem = policy.recipient_problem(fields["to"], directory.recipient(fields["to"]))
    if problem is not None:
        raise InputError(problem.detail, problem.code)


def _same_content(existing: Doc, fields: Doc) -> list[str]:
    """The fields in which a document already holding a key differs from a new one."""

    def value(doc: Doc, name: str) -> object:
        found = doc.get(name)
        if name == "priority" and found is None:
            return 0
        if isinstance(found, datetime):  # BSON keeps milliseconds
            utc = as_utc(found)
            return utc.replace(microsecond=utc.microsecond // 1000 * 1000)
        return found

    return [name for name in _CONTENT if value(existing, name) != value(fields, name)]


def _insert(
    store: Outbox,
    doc: Doc,
    now: datetime,
    sign_key: Callable[[], str] | str | None,
    directory: Directory | None = None,
) -> Enqueued:
    admission = intake.admit(doc, now)
    if admission.problem is not None:
        raise InputError(admission.problem.detail, admission.problem.code)
    if directory is not None:
        vet(directory, admission.fields)
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
        existing = store.find_by_key(str(doc["key"]), str(doc["user"]))
        if existing is None:
            raise
        differs = _same_content(existing, fields)
        if differs:
            raise InputError(
                f"key {doc['key']!r} is already message {existing['_id']}, with a different"
                f" {', '.join(differs)}; use a new key for a new message",
                "duplicate_key",
            ) from None
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
    directory: Directory | None = None,
) -> Enqueued:
    """Queue one message (or, with `audience`, a broadcast), signed with `sign_key` or the key
    it returns, fetched once the message is known to be valid. Raises InputError with the
    reason when the daemon would reject it (with `directory`, also for a sender or recipient
    it would refuse), or when `key` already names a message with other content."""
    doc: Doc = {"user": user, "to": to, "audience": audience, "body": body, "from": source}
    doc.update(key=key, send_at=send_at, priority=priority)
    fields = {k: v for k, v in doc.items() if v is not None}
    return _insert(store, fields, now, sign_key, directory)


def broadcast(store: Outbox, **fields: Any) -> Enqueued:
    """Queue a broadcast to every verified recipient; its id is the campaign id. Takes the
    keyword arguments of `enqueue`, without `to`."""
    return enqueue(store, to=None, audience=BROADCAST_AUDIENCE, **fields)
