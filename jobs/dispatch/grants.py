"""Grants held for one cycle: the directory as a cycle sees it, each sender's numbers read once
per cycle and each recipient's consent read for every message."""

from __future__ import annotations

from datetime import datetime

from jobs.dispatch.ports import Directory, Doc


class CycleDirectory:
    """A Directory that reads each user's grants once for its lifetime (one cycle), so a batch
    from one sender costs one read of `authorized`. A revoked grant takes effect at the next
    cycle. Consent is never held: `recipient` reads `users` every time, so an opt-out takes
    effect for the very next message."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self._sources: dict[str, list[str]] = {}

    def ensure_indexes(self) -> None:
        """The directory's own indexes."""
        self.directory.ensure_indexes()

    def sources_for(self, user: str) -> list[str]:
        """The numbers `user` may send from, as first read in this cycle."""
        if user not in self._sources:
            self._sources[user] = self.directory.sources_for(user)
        return list(self._sources[user])

    def recipient(self, number: str) -> Doc | None:
        """The recipient's record, read now."""
        return self.directory.recipient(number)

    def verified_after(self, after: str | None, limit: int) -> list[str]:
        """Verified numbers after `after`, read now."""
        return self.directory.verified_after(after, limit)

    def opt_out(self, number: str, *, now: datetime, reason: str) -> None:
        """Record an opt-out."""
        self.directory.opt_out(number, now=now, reason=reason)
