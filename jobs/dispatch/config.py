"""The dispatch configuration: the `[dispatch]` settings the send cycle and the fan-out read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from jobs.model import DEFAULT_MAX_SEGMENTS
from jobs.rules.quiet_hours import Window


@dataclass(frozen=True)
class DispatchConfig:
    """The `[dispatch]` settings the cycle needs."""

    batch_size: int = 10
    lease_seconds: float = 120.0
    max_attempts: int = 5
    record_retry_seconds: float = 60.0
    max_segments: int = DEFAULT_MAX_SEGMENTS
    quiet_hours: Window | None = None
    concurrency: int = 1  # sends in flight at once

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)
