"""Choosing the send guard at start-up: tickets where find-and-modify may not be atomic, none
where the server guarantees it, from what the server says it is."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from pymongo.database import Database
from pymongo.errors import OperationFailure

from jobs.clock import Clock
from jobs.mongo.connection import translating
from jobs.mongo.tickets import SendTickets
from jobs.ports import NoGuard, SendGuard

GuardSetting = Literal["auto", "tickets", "none"]
GUARDS = ("tickets", "none")
GIT_COMMIT = re.compile(r"[0-9a-f]{40}")
log = structlog.get_logger("sms_outbox.store")


@dataclass(frozen=True)
class GuardChoice:
    """The guard to use, and what the server said it is (for the start-up log)."""

    guard: Literal["tickets", "none"]
    server: str


def identify(build_info: Mapping[str, Any] | None) -> tuple[str, bool]:
    """What the server is, from its `buildInfo`, and whether its find-and-modify is atomic.

    FerretDB 1.x answers a find-and-modify with a read and a separate write, and says so with
    a `ferretdbVersion` key; FerretDB 2.x, on PostgreSQL with DocumentDB, is atomic and reports
    a `ferretdb` document. MongoDB proper reports its git commit and its storage engines. Any
    other answer is taken as not atomic.
    """
    if not build_info:
        return "unknown (no buildInfo)", False
    version = str(build_info.get("version", "?"))
    ferretdb = build_info.get("ferretdb")
    if isinstance(ferretdb, Mapping) or "ferretdbVersion" in build_info:
        found = ferretdb.get("version") if isinstance(ferretdb, Mapping) else None
        release = str(found or build_info.get("ferretdbVersion") or "?")
        major = re.match(r"v?(\d+)\.", release)
        return f"FerretDB {release}", major is not None and int(major.group(1)) >= 2
    commit = build_info.get("gitVersion")
    if (
        isinstance(commit, str)
        and GIT_COMMIT.fullmatch(commit)
        and isinstance(build_info.get("storageEngines"), list)
    ):
        return f"MongoDB {version}", True
    return f"unknown (reports version {version})", False


def choose(setting: GuardSetting, build_info: Mapping[str, Any] | None) -> GuardChoice:
    """`tickets` or `none` as configured; `auto` picks `none` only on a server known atomic."""
    if setting != "auto":
        return GuardChoice(setting, "not asked")
    server, atomic = identify(build_info)
    return GuardChoice("none" if atomic else "tickets", server)


@translating
def build(db: Database[dict[str, Any]], clock: Clock, setting: GuardSetting) -> SendGuard:
    """The send guard for this server, chosen once at start-up and logged."""
    info = _build_info(db) if setting == "auto" else None
    choice = choose(setting, info)
    log.info("store.send_guard", guard=choice.guard, setting=setting, server=choice.server)
    return SendTickets(db, clock) if choice.guard == "tickets" else NoGuard()


def _build_info(db: Database[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return dict(db.command("buildInfo"))
    except (OperationFailure, NotImplementedError):  # refused, or an in-memory database
        return None
