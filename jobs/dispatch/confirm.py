"""Looking callbacks up: each cycle may spend a few record lookups, on the lookup pacer, and
what an inbox entry became this cycle (applied, set aside unverified, waiting or deferred)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import structlog

from jobs.errors import ProviderError
from jobs.records import MessageRecords

log = structlog.get_logger("sms_outbox.confirm")
NOT_FOUND = "404"


class Found(StrEnum):
    RECORD = "record"
    ABSENT = "absent"  # Flowroute has no such message (yet: records take seconds to appear)
    FAILED = "failed"  # the lookup failed; it changes nothing, so it is simply tried again
    DEFERRED = "deferred"  # this cycle's lookups are spent
    UNAVAILABLE = "unavailable"  # no Flowroute credentials: nothing can be confirmed


@dataclass(frozen=True)
class Lookup:
    found: Found
    record: dict[str, Any] | None = None
    detail: str = ""


class Lookups:
    """Record lookups for callbacks, at most `per_cycle` each cycle, so a flood of forged
    callbacks costs a bounded delay per cycle, never a cycle without end."""

    def __init__(self, records: MessageRecords | None, per_cycle: int) -> None:
        self.records = records
        self.per_cycle = per_cycle
        self.left = per_cycle

    def start_cycle(self) -> None:
        self.left = self.per_cycle

    def get(self, provider_id: str) -> Lookup:
        """Flowroute's record of `provider_id`, or why there is none this cycle."""
        if self.records is None:
            return Lookup(Found.UNAVAILABLE, detail="no Flowroute credentials to look records up")
        if self.left <= 0:
            return Lookup(Found.DEFERRED)
        self.left -= 1
        try:
            return Lookup(Found.RECORD, self.records.get(provider_id))
        except ProviderError as error:
            if error.code == NOT_FOUND:
                return Lookup(Found.ABSENT, detail="Flowroute has no message with this id")
            log.warning("callback.lookup_failed", provider_id=provider_id, code=error.code)
            return Lookup(Found.FAILED, detail=f"lookup failed: {error.code}")


class Fate(StrEnum):
    """What an inbox entry became this cycle."""

    APPLIED = "applied"
    UNVERIFIED = "unverified"  # kept, with reason `unverified`; it changes nothing more
    WAITING = "waiting"  # looked at again after `delay`
    DEFERRED = "deferred"  # looked at again next cycle, when lookups are free again


@dataclass(frozen=True)
class Step:
    """An inbox entry's fate this cycle, with its outcome and why."""

    outcome: str | None
    fate: Fate = Fate.APPLIED
    detail: str | None = None
    delay: timedelta = timedelta(0)


def tries_of(entry: Mapping[str, Any]) -> int:
    """How many times an inbox entry was tried (the inbox is writable: anything else is 0)."""
    tries = entry.get("tries")
    return tries if isinstance(tries, int) and not isinstance(tries, bool) else 0
