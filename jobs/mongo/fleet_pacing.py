"""Pacing shared by every daemon of one Flowroute account, through blocks of slots in MongoDB.

A daemon reserves a block (one window's worth of evenly spaced slots, see `jobs.rules.slots`) by
inserting a document under a unique id made of the account and the block number: an insert
either wins the block or fails with a duplicate key, which is atomic on every MongoDB-compatible
server, including those whose find-and-modify is not. It then sends in its block's slots without
asking the database again. Blocks are on the database server's clock, which each daemon reads
with `hello` and follows with its own monotonic clock.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from typing import Any

import structlog
from pymongo.database import Database
from pymongo.errors import PyMongoError

from jobs.clock import Clock
from jobs.errors import RetryableError
from jobs.mongo.connection import adapter
from jobs.mongo.fleet_clock import ServerClock, ServerTime
from jobs.mongo.pacing_blocks import PacingBlocks
from jobs.rules.slots import SlotPlan

log = structlog.get_logger("sms_outbox.pacing")

MAX_AHEAD_BLOCKS = 64
CLEANUP_EVERY = 128
KEEP_BLOCKS = 600


@adapter
class FleetPacer:
    """The `Pacer` of one daemon in a fleet sharing `account`; thread-safe within the process.

    `acquire` blocks until this daemon's next slot; `penalize` (after a 429) stops the whole
    fleet for a window plus margin. Database errors propagate from `acquire`, so nothing is sent
    while the shared state cannot be read; `penalize` never raises.
    """

    def __init__(
        self,
        db: Database[dict[str, Any]],
        account: str,
        plan: SlotPlan,
        clock: Clock,
        *,
        server_time: ServerTime | None = None,
        early: float = 0.0,
    ) -> None:
        self.db = db
        self.account = account
        self.plan = plan
        self.clock = clock
        self.blocks = PacingBlocks(db, account, uuid.uuid4().hex[:12])
        self.server_clock = ServerClock(
            db, clock, plan.late, server_time, spacing_ms=round(plan.spacing * 1000, 1)
        )
        # With a `GatedProvider`, acquire returns this much before the slot and the request
        # waits for the slot itself in `wait_for_slot`.
        self.early = min(early, plan.block_seconds / 2)
        # Per thread: when to send, and the latest it may (each send worker holds its own slot).
        self._handed: dict[int, tuple[float, float]] = {}
        self._indexed = False
        self._block: int | None = None
        self._index = 0
        # A run is a series of consecutive blocks of this daemon; inside it, its own send times
        # show what the window holds, so a slot missed between two batches can be made up.
        self._run_start = 0
        self._sent: deque[float] = deque(maxlen=plan.rate)
        self._unchecked = False
        self._blocked_until = 0.0
        self._hint = -1  # the highest block this daemon knows to be taken
        self._crowded = False
        self._lock = threading.Lock()

    @property
    def commands(self) -> int:
        """Database commands sent, for the benchmark and the tests."""
        return self.server_clock.commands + self.blocks.commands

    def acquire(self) -> None:
        """Wait for this thread's next slot (or until `early` before it, see `wait_for_slot`).

        Slots are handed out under the lock, in order; the waits happen outside it, so several
        send workers of one daemon each hold a slot of their own while they write."""
        with self._lock:
            self._prepare()
            # A slot handed out for a message that was not sent after all (its claim was lost,
            # it was rejected late) is still ours: this thread's next message takes it.
            held = self._held_slot()
            unused = held if held is not None and self._now() <= held[1] else None
            due, latest = unused or self._next_slot()
            if self.early:
                self._handed[threading.get_ident()] = (due, latest)
                wait = due - self.early - self._now()
            else:
                wait = due - self._now()
        self.clock.sleep(wait)
        if not self.early:
            with self._lock:
                self._record_sent(self._now())

    def _held_slot(self) -> tuple[float, float] | None:
        return self._handed.get(threading.get_ident())

    def _others_hold_slots(self, now: float) -> bool:
        """Whether another worker holds a slot it has not used yet."""
        me = threading.get_ident()
        return any(latest >= now for who, (_, latest) in self._handed.items() if who != me)

    def _record_sent(self, at: float) -> None:
        """Keep the last `rate` send times in order, whichever worker sent first."""
        self._sent.append(at)
        if len(self._sent) > 1 and self._sent[-2] > at:
            ordered = sorted(self._sent)
            self._sent.clear()
            self._sent.extend(ordered)

    def wait_for_slot(self) -> None:
        """Hold the request until the slot `acquire` handed this thread (see `GatedProvider`).

        A request that reaches its slot too late (slow writes, an overloaded machine) takes the
        next slot instead: sent late, it would crowd the window of the daemon after it. So does
        one whose slot a 429 met by another send worker voided while it waited.
        """
        with self._lock:
            slot = self._handed.pop(threading.get_ident(), None)
        try:
            while slot is not None:
                due, latest = slot
                self.clock.sleep(due - self._now())
                with self._lock:
                    now = self._now()
                    if now < self._blocked_until:
                        slot = self._next_slot()
                        continue
                    if now <= latest:
                        self._record_sent(now)
                        return
                    log.info("pacing.slot_missed", late_ms=round((now - due) * 1000))
                    slot = self._next_slot()
        except PyMongoError as exc:
            raise RetryableError("pacing_unavailable", type(exc).__name__) from exc

    def _next_slot(self) -> tuple[float, float]:
        """When this daemon's next slot may be used, and the latest it may still be used (fleet
        time); reserves a block when this daemon has none left."""
        while True:
            now = self._now()
            if self._block is None or self._index >= self.plan.rate:
                self._reserve(now)
                continue
            block = self._block
            if self._unchecked:
                # Another daemon may have been refused since we reserved: look just before use.
                look_at = self.plan.slot_time(block, self._index) - self.plan.spacing
                if now < look_at:
                    self._sleep_unlocked(look_at - now)
                    continue
                self._unchecked = False
                self._read_penalty(now)
                continue
            index = max(self._index, self.plan.first_usable(block, now, self._blocked_until))
            if index >= self.plan.rate:
                self._index = index  # used up by time; the next block may still continue the run
                continue
            self._index = index + 1
            slot = self.plan.slot_time(block, index)
            own_window = len(self._sent) == self.plan.rate and not self._others_hold_slots(now)
            if own_window and self._sent[0] >= self._run_start_time():
                # The window before this slot holds only our own sends: it may go as soon as
                # the oldest of the last `rate` of them is a window plus margin old.
                earliest = self._sent[0] + self.plan.block_seconds
                return max(earliest, now, self._blocked_until), slot + self.plan.late
            return slot + self._lead(), slot + self.plan.late

    def _sleep_unlocked(self, seconds: float) -> None:
        """Wait inside a step that holds the lock, letting the other send workers take and use
        their slots meanwhile; the caller reads the state again after."""
        self._lock.release()
        try:
            self.clock.sleep(seconds)
        finally:
            self._lock.acquire()

    def _run_start_time(self) -> float:
        return self.plan.slot_time(0, self._run_start)

    def penalize(self) -> None:
        """A 429: no attempt from any daemon for a window plus margin."""
        with self._lock:
            now = self._now()
            until = self.plan.penalty_until(now)
            self._blocked_until = max(self._blocked_until, until)
            self._block = None
            blocks = self.plan.blocks_until(now, until)
            self._hint = max(self._hint, blocks[-1])
            try:
                self.blocks.share_penalty(now, until, blocks)
            except PyMongoError as exc:
                log.warning("pacing.penalty_unshared", error=type(exc).__name__)
            log.info("pacing.penalized", until=round(until - now, 3))

    def prepare(self) -> None:
        """At start-up: the indexes and the first reading of the server's clock, which `acquire`
        otherwise does on first use (the clock is read again every RESYNC_SECONDS)."""
        with self._lock:
            self._prepare()

    def ensure_indexes(self) -> None:
        """The frontier query's index, and expiry of old blocks where the server supports TTL."""
        self.blocks.ensure_indexes()

    def _prepare(self) -> None:
        if not self._indexed:
            self.ensure_indexes()
            self._indexed = True
        self.server_clock.follow()

    def _now(self) -> float:
        """Fleet time: the server's clock as followed by this daemon's monotonic clock."""
        return self.server_clock.now()

    def _lead(self) -> float:
        """Leave no earlier than the clock's error allows, within half the lateness allowed."""
        return min(self.server_clock.uncertainty(), self.plan.late / 2)

    def _reserve(self, now: float) -> None:
        """Win the first free block from now (or the end of a penalty) on."""
        current = self.plan.block_at(max(now, self._blocked_until))
        candidate = max(current, self._hint + 1)
        if self._crowded:
            candidate = max(candidate, self._frontier(current) + 1)
        while True:
            if candidate > current + MAX_AHEAD_BLOCKS:
                log.warning("pacing.crowded", blocks_ahead=candidate - current)
                self._sleep_unlocked(self.plan.block_seconds)
                return
            if self.blocks.insert(candidate, now):
                break
            self._crowded = True
            candidate = max(candidate + 1, self._frontier(current) + 1)
        # Right after a block of our own, any refusal since was ours; otherwise another daemon
        # may have been refused while we waited, so the penalty is read before the first slot.
        contiguous = candidate == (self._block or 0) + 1
        self._unchecked = not contiguous
        if not contiguous:
            self._run_start = candidate * self.plan.rate
            self._sent.clear()
        self._block, self._index = candidate, 0
        self._hint = candidate
        if candidate % CLEANUP_EVERY == 0:
            self.blocks.forget_before(candidate - KEEP_BLOCKS)

    def _frontier(self, current: int) -> int:
        """The last block taken (by anyone) from `current` on, or `current - 1`; this daemon is
        no longer crowded when nobody reserved after it."""
        block, alone = self.blocks.frontier(current, MAX_AHEAD_BLOCKS)
        if alone:
            self._crowded = False
        return block

    def _read_penalty(self, now: float) -> None:
        until = self.blocks.penalty()
        if until is None:
            return
        if until > self.plan.penalty_until(now) + self.plan.block_seconds:
            # No daemon writes a penalty this long: a broken clock or a tampered document.
            log.warning("pacing.penalty_ignored", seconds_ahead=round(until - now, 3))
            return
        self._blocked_until = max(self._blocked_until, until)
