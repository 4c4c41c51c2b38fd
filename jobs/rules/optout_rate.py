"""The opt-out rate of a sending number over a day, and Flowroute's warning threshold. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

WARN_RATE = 0.05  # Flowroute's warning threshold


@dataclass(frozen=True)
class Rate:
    """Opt-outs received on `source` against messages it sent, on one UTC day."""

    source: str
    day: str
    opt_outs: int
    sent: int

    @property
    def rate(self) -> float | None:
        return self.opt_outs / self.sent if self.sent else None

    def over(self, threshold: float = WARN_RATE) -> bool:
        """Over the threshold; opt-outs with nothing sent that day count as over."""
        rate = self.rate
        return self.opt_outs > 0 and (rate is None or rate > threshold)


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The UTC day `now` falls in."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def rates(day: str, opt_outs: Counter[str], sent: Counter[str]) -> list[Rate]:
    """One Rate per number that sent or received an opt-out."""
    numbers = sorted(set(opt_outs) | set(sent))
    return [Rate(n, day, opt_outs[n], sent[n]) for n in numbers]
