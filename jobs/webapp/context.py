"""What every request handler reaches: the settings, the database adapters, the clock, and who
is signed in (with the grants read on this very request, so a revoked grant counts at once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, g, request, session

from jobs.clock import Clock
from jobs.mongo.audit import AuditLog
from jobs.mongo.connection import Db
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from jobs.webapp.config import SESSION_HOURS, WebConfig
from jobs.webapp.tokens import Issuer

EXTENSION = "sms_outbox"


@dataclass
class Web:
    """The app's collaborators, built once by `create_app`."""

    config: WebConfig
    db: Db
    clock: Clock
    issuer: Issuer
    store: OutboxStore
    oauth: Any = None  # Authlib's registered client (untyped)
    directory: Directory = field(init=False)
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.directory = Directory(self.db)
        self.audit = AuditLog(self.db)


def web() -> Web:
    found: Web = current_app.extensions[EXTENSION]
    return found


@dataclass(frozen=True)
class Person:
    """A signed-in user (or an API caller) and what they may do now."""

    user: str
    name: str
    sources: tuple[str, ...]
    viewer: bool
    admin: bool
    zone: str | None = None

    @property
    def may_send(self) -> bool:
        return bool(self.sources)

    @property
    def may_look(self) -> bool:
        return self.may_send or self.viewer or self.admin


def person_for(user: str, name: str | None = None, zone: str | None = None) -> Person:
    """`user`'s rights as of now: senders hold a grant in `authorized`, viewers and admins are
    listed in the settings."""
    w = web()
    sources = tuple(w.directory.sources_for(user))
    return Person(
        user, name or user, sources, user in w.config.viewers, user in w.config.admins, zone
    )


def signed_in_since(now: datetime) -> datetime | None:
    """When this session signed in, if it did and it is not older than a session lasts."""
    at = session.get("at")
    if not isinstance(at, int | float) or not isinstance(session.get("user"), str):
        return None
    since = datetime.fromtimestamp(at, now.tzinfo)
    return since if now - since < timedelta(hours=SESSION_HOURS) else None


def current_person() -> Person | None:
    """Who the session belongs to, or None (signed out, expired, or the cookie was not ours)."""
    if "person" not in g:
        found = None
        if signed_in_since(web().clock.now()) is not None:
            found = person_for(session["user"], session.get("name"), session.get("zone"))
        g.person = found
    person: Person | None = g.person
    return person


def client_address() -> str | None:
    """The caller's address as waitress saw it (proxy headers are not trusted)."""
    return request.remote_addr
