"""Watching the opt-out rate: today's rate per sending number, with a warning over the threshold."""

from __future__ import annotations

from datetime import datetime

import structlog

from jobs.clock import Clock
from jobs.ports import InboundLog
from jobs.rules import optout_rate
from jobs.rules.optout_rate import Rate

log = structlog.get_logger("sms_outbox.optouts")


def today(inbound: InboundLog, clock: Clock) -> list[Rate]:
    """Each sending number's opt-out rate so far today (UTC)."""
    return on_day(inbound, clock.now())


def on_day(inbound: InboundLog, now: datetime) -> list[Rate]:
    """Each sending number's opt-out rate on the UTC day `now` falls in."""
    start, end = optout_rate.day_bounds(now)
    opt_outs, sent = inbound.opt_out_counts(start, end)
    return optout_rate.rates(start.date().isoformat(), opt_outs, sent)


class OptOutWatch:
    """A scheduled check: warns once per number and day whose rate passes the threshold."""

    def __init__(self, inbound: InboundLog, clock: Clock, threshold: float) -> None:
        self.inbound = inbound
        self.clock = clock
        self.threshold = threshold
        self._warned: set[tuple[str, str]] = set()

    def __call__(self) -> int:
        for rate in today(self.inbound, self.clock):
            key = (rate.source, rate.day)
            if rate.over(self.threshold) and key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "optout.rate_high", source=rate.source, day=rate.day, opt_outs=rate.opt_outs,
                    sent=rate.sent, rate=rate.rate, threshold=self.threshold,
                )  # fmt: skip
        return 0
