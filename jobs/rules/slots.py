"""Slot arithmetic for pacing shared by a fleet: blocks of evenly spaced send slots on one timeline.

Fleet time is a float number of seconds on the database server's clock. It is cut into blocks of
`rate` slots each; a daemon holds a whole block at a time, and the slots inside a block and across
consecutive blocks are `spacing` apart, so any `rate + 1` attempts span more than a window.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

WINDOW_SECONDS = 1.0
DEFAULT_MARGIN_SECONDS = 0.025
# The margin `auto` gives the highest rates (see `auto_margin`), and the rate it starts to grow.
WIDEST_AUTO_MARGIN_SECONDS = 0.050
AUTO_MARGIN_FROM_RATE = 10


def auto_margin(rate: int) -> float:
    """The pacing margin for `rate` sends a second: 25 ms up to 10 a second, growing evenly to
    50 ms at 50 a second and above. The more sends one daemon paces, the more send workers wait
    on the interpreter and the network at once, and the later a request can leave after its
    slot (at 50/s and 300 ms of latency, 25 ms of margin met 3 or 4 refusals a minute and filled
    86% of the limit; 50 ms met none and filled 95%)."""
    grown = (rate - AUTO_MARGIN_FROM_RATE) / (50 - AUTO_MARGIN_FROM_RATE)
    span = WIDEST_AUTO_MARGIN_SECONDS - DEFAULT_MARGIN_SECONDS
    return DEFAULT_MARGIN_SECONDS + span * min(max(grown, 0.0), 1.0)


@dataclass(frozen=True)
class SlotPlan:
    """How the fleet's timeline is cut: `rate` slots per block, `spacing` seconds apart.

    `rate` attempts take one window plus `margin`, so a window holds at most `rate` attempts as
    long as no attempt reaches Flowroute more than `margin` later, relative to the others, than
    its slot says. `late` is the part of that margin a daemon may spend arriving late at a slot.
    """

    rate: int
    margin: float = DEFAULT_MARGIN_SECONDS

    def __post_init__(self) -> None:
        if self.rate < 1:
            raise ValueError("a slot plan needs a rate of at least 1 per second")
        if not 0 < self.margin < WINDOW_SECONDS:
            raise ValueError("the pacing margin must be between 0 and one window")

    @property
    def spacing(self) -> float:
        return (WINDOW_SECONDS + self.margin) / self.rate

    @property
    def block_seconds(self) -> float:
        """One block holds one window's worth of slots: what a killed daemon can waste."""
        return self.spacing * self.rate

    @property
    def late(self) -> float:
        return self.margin / 2

    @property
    def share_of_limit(self) -> float:
        """The fraction of `rate` per second that back-to-back slots use."""
        return 1.0 / (self.spacing * self.rate)

    def block_at(self, t: float) -> int:
        """The block that holds fleet time `t`."""
        return math.floor(t / self.block_seconds)

    def slot_time(self, block: int, index: int) -> float:
        """Fleet time of slot `index` (0 to rate - 1) in `block`."""
        return (block * self.rate + index) * self.spacing

    def block_end(self, block: int) -> float:
        return self.slot_time(block + 1, 0)

    def first_usable(self, block: int, now: float, not_before: float = 0.0) -> int:
        """Index of the first slot in `block` that is neither missed at `now` nor before
        `not_before` (a penalty); `rate` when none is left."""
        earliest = max(now - self.late, not_before)
        index = math.ceil(earliest / self.spacing - 1e-9) - block * self.rate
        return min(max(index, 0), self.rate)

    def blocks_until(self, now: float, until: float) -> range:
        """The blocks that hold any time from `now` to `until`."""
        return range(self.block_at(now), self.block_at(until) + 1)

    def penalty_until(self, now: float) -> float:
        """After a refusal the whole window is full: no attempt for a window plus margin."""
        return now + WINDOW_SECONDS + self.margin


@dataclass(frozen=True)
class Offset:
    """Server time minus local monotonic time, give or take `uncertainty` seconds."""

    seconds: float
    uncertainty: float


def estimate_offset(samples: Iterable[tuple[float, float, float]]) -> Offset:
    """The offset from (sent, server_time, received) samples: the one with the shortest round
    trip wins, its server time being somewhere between sending and receiving.

    Server times come in whole milliseconds, truncated, so the true time is up to 1 ms later.
    """
    best: Offset | None = None
    for sent, server, received in samples:
        if received < sent:
            raise ValueError("a sample was received before it was sent")
        half_trip = (received - sent) / 2
        candidate = Offset(server + 0.0005 - (sent + half_trip), half_trip + 0.0005)
        if best is None or candidate.uncertainty < best.uncertainty:
            best = candidate
    if best is None:
        raise ValueError("no samples to estimate the clock offset from")
    return best


def account_id(base_url: str, access_key: str) -> str:
    """Names the Flowroute account in the shared pacing state without storing any key."""
    text = f"{base_url.rstrip('/').lower()}\n{access_key}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
