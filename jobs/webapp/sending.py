"""Sending on a person's behalf, for the compose page and the API alike: the hourly limit, the
producer's checks, the person's signing key, and the audit record."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jobs import producer
from jobs.errors import InputError
from jobs.model import Reason
from jobs.webapp.context import Person, web

HOUR = timedelta(hours=1)


class Limited(Exception):
    """The person has sent as many broadcasts this hour as `web.broadcasts_per_hour` allows."""


def broadcasts_left(person: Person, now: datetime) -> int:
    w = web()
    sent = w.audit.count_since(person.user, "send", now - HOUR)
    return max(w.config.broadcasts_per_hour - sent, 0)


def send(
    person: Person,
    *,
    body: str,
    to: str | None = None,
    source: str | None = None,
    send_at: datetime | None = None,
    key: str | None = None,
    address: str | None = None,
) -> producer.Enqueued:
    """Queue a message to `to`, or a broadcast to every verified recipient when `to` is None,
    signed with the person's key; InputError with a reason code when it may not be sent."""
    w = web()
    now = w.clock.now()
    if not person.may_send:
        raise InputError(f"user {person.user!r} has no grant to send", Reason.NOT_AUTHORIZED)
    if source is not None and source not in person.sources:
        raise InputError(f"{source} is not a number granted to you", Reason.SOURCE_NOT_GRANTED)
    if to is None and broadcasts_left(person, now) <= 0:
        raise Limited(f"{w.config.broadcasts_per_hour} broadcasts an hour is the limit")

    def sign_key() -> str:
        found = w.config.keyring.user_key(person.user)
        if found is None:
            raise InputError(
                f"user {person.user!r} has no signing key on this server", Reason.SIGNATURE
            )
        return found

    common: dict[str, Any] = dict(
        user=person.user, body=body, now=now, source=source, key=key, send_at=send_at,
        sign_key=sign_key if w.config.require_signatures else None, directory=w.directory,
    )  # fmt: skip
    if to is None:
        result = producer.broadcast(w.store, **common)
    else:
        result = producer.enqueue(w.store, to=to, **common)
    if result.created:
        w.audit.record(
            "send" if to is None else "send_message", person.user, address, now,
            id=str(result.id), source=source, send_at=send_at, segments_body=len(body),
        )  # fmt: skip
    return result
