"""Grants held for one cycle: the directory as a cycle sees it, each sender's numbers read once
per cycle and the consent of a claimed batch's recipients read once, just after the claim."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

from jobs.errors import InputError
from jobs.ports import Directory, Doc
from jobs.rules import phone


class CycleDirectory:
    """A Directory that reads each user's grants once for its lifetime (one cycle), so a batch
    from one sender costs one read of `authorized`. A revoked grant takes effect at the next
    cycle.

    Consent is read once per claimed batch (`read_consent`, after the claim), so an opt-out
    recorded before the batch was claimed is honoured for every message of the batch. An
    opt-out this daemon records itself (`opt_out`: Flowroute's 1110) is honoured from the very
    next message; one recorded by another process while a batch is being sent takes effect from
    the next batch, a few seconds later. A number not read with the batch is read when asked."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # the send workers of one batch share this cycle's reads
        self._sources: dict[str, list[str]] = {}
        self._max_priority: dict[str, int] = {}
        self._consent: dict[str, Doc | None] = {}

    def ensure_indexes(self) -> None:
        """The directory's own indexes."""
        self.directory.ensure_indexes()

    def sources_for(self, user: str) -> list[str]:
        """The numbers `user` may send from, as first read in this cycle."""
        with self._lock:
            if user not in self._sources:
                self._sources[user] = self.directory.sources_for(user)
            return list(self._sources[user])

    def max_priority(self, user: str) -> int:
        """The highest priority `user`'s grants allow, as first read in this cycle."""
        if user not in self._max_priority:
            self._max_priority[user] = self.directory.max_priority(user)
        return self._max_priority[user]

    def read_consent(self, batch: Iterable[Doc]) -> None:
        """Read the consent of every recipient of a just-claimed batch in one read. Numbers that
        do not parse are left out: vetting rejects them without asking."""
        numbers: set[str] = set()
        for doc in batch:
            try:
                numbers.add(phone.normalize(doc.get("to")))
            except InputError:
                continue
        if numbers:
            self._consent.update(self.directory.consent_of(sorted(numbers)))

    def recipient(self, number: str) -> Doc | None:
        """The recipient's record as read with the batch, or read now."""
        if number in self._consent:
            held = self._consent[number]
            return None if held is None else dict(held)
        return self.directory.recipient(number)

    def consent_of(self, numbers: list[str]) -> dict[str, Doc | None]:
        """The records of several recipients, read now."""
        return self.directory.consent_of(numbers)

    def verified_page(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """A page of verified numbers after `cursor`, and the next cursor, read now."""
        return self.directory.verified_page(cursor, limit)

    def opt_out(self, number: str, *, now: datetime, reason: str) -> None:
        """Record an opt-out; every later message of this cycle reads consent afresh."""
        self.directory.opt_out(number, now=now, reason=reason)
        self._consent.clear()

    def is_source(self, number: str) -> bool:
        """Whether any sender was granted `number`, read now."""
        return self.directory.is_source(number)
