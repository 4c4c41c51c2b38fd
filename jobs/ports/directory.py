"""The directory ports: who may send from which number, and who may be texted."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from jobs.ports.outbox import Doc


class Directory(Protocol):
    """Who may send from which number, and who may be texted (`jobs.mongo.directory`)."""

    def ensure_indexes(self) -> None: ...

    def sources_for(self, user: str) -> list[str]: ...

    def max_priority(self, user: str) -> int: ...

    def recipient(self, number: str) -> Doc | None: ...

    def consent_of(self, numbers: list[str]) -> dict[str, Doc | None]: ...

    def verified_page(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]: ...

    def opt_out(self, number: str, *, now: datetime, reason: str) -> None: ...

    def is_source(self, number: str) -> bool: ...


class Consents(Protocol):
    """The directory as inbound texts change it: recipients and their opt-outs
    (`jobs.mongo.directory`)."""

    def is_source(self, number: str) -> bool: ...

    def recipient(self, number: str) -> Doc | None: ...

    def opt_out(
        self, number: str, *, now: datetime, reason: str, evidence: Doc | None = None
    ) -> None: ...

    def confirm_opt_out(self, number: str, inbound_id: str, *, now: datetime) -> None: ...

    def end_opt_out(self, number: str, evidence: Doc) -> bool: ...
