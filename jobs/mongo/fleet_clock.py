"""The database server's clock, which fleet pacing runs on: read with `hello` and followed with
this daemon's monotonic clock, so daemons whose own clocks disagree still share one timeline."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from pymongo.database import Database
from pymongo.errors import PyMongoError

from jobs.clock import Clock, as_utc
from jobs.rules.slots import Offset, estimate_offset

log = structlog.get_logger("sms_outbox.pacing")

SAMPLES = 3
RESYNC_SECONDS = 300.0

ServerTime = Callable[[], datetime]


class ServerClock:
    """Fleet time for one daemon; `commands` counts the `hello`s it sent."""

    def __init__(
        self,
        db: Database[dict[str, Any]],
        clock: Clock,
        late: float,
        server_time: ServerTime | None = None,
        *,
        spacing_ms: float = 0.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.late = late  # how late a slot may be used: half of it bounds the clock's error
        self.commands = 0
        self._server_time = server_time or self._hello_time
        self._spacing_ms = spacing_ms
        self._offset: Offset | None = None
        self._synced_at = -math.inf

    def follow(self) -> None:
        """Read the server's clock again when the last reading is old."""
        if self.clock.monotonic() - self._synced_at >= RESYNC_SECONDS:
            self._sync()

    def now(self) -> float:
        """Fleet time: the server's clock as followed by this daemon's monotonic clock."""
        if self._offset is None:
            self._sync()
        assert self._offset is not None
        return self.clock.monotonic() + self._offset.seconds

    def uncertainty(self) -> float:
        """How far fleet time may be off, from the shortest round trip of the last reading."""
        if self._offset is None:
            self._sync()
        assert self._offset is not None
        return self._offset.uncertainty

    def _sync(self) -> None:
        """Measure the server clock against ours; the shortest round trip bounds the error."""
        samples = []
        for _ in range(SAMPLES):
            sent = self.clock.monotonic()
            server = as_utc(self._server_time()).timestamp()
            samples.append((sent, server, self.clock.monotonic()))
        first = self._offset is None
        self._offset = estimate_offset(samples)
        self._synced_at = self.clock.monotonic()
        uncertainty_ms = round(self._offset.uncertainty * 1000, 2)
        if first:
            log.info("pacing.synced", uncertainty_ms=uncertainty_ms, spacing_ms=self._spacing_ms)
        if self._offset.uncertainty > self.late / 2:
            log.warning(
                "pacing.clock_uncertain",
                uncertainty_ms=uncertainty_ms,
                detail="the database's round trip eats into the pacing margin",
            )

    def _hello_time(self) -> datetime:
        self.commands += 1
        reply = self.db.client.admin.command("hello")
        local_time = reply.get("localTime")
        if not isinstance(local_time, datetime):
            raise PyMongoError("the server's hello reply has no localTime")
        return local_time
