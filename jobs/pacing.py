"""Client-side pacing: no 1000 ms window ever holds more than `rate` send attempts."""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

from jobs.clock import Clock
from jobs.flowroute import SmsProvider

WINDOW_SECONDS = 1.0
# Requests leave a little later than we stamp them; the margin keeps a burst that straddles two of
# Flowroute's windows from landing in one.
MARGIN_SECONDS = 0.05
# A request held for a reserved time may leave this much after it and still fit the margin.
LATE_SECONDS = MARGIN_SECONDS / 2


class Pacer(Protocol):
    """Decides when the next request may leave."""

    def acquire(self) -> None: ...

    def penalize(self) -> None: ...


class SlidingWindowPacer:
    """Blocks in `acquire` until a send fits in the window; thread-safe within one process.

    After a 429 (`penalize`) it waits a whole window with no attempt at all, because Flowroute
    counts refused attempts too and hammering would keep the window full.
    """

    def __init__(self, rate: float | None, clock: Clock, *, early: float = 0.0) -> None:
        self.rate = rate
        self.clock = clock
        # With `early`, `acquire` reserves a send time and returns this much before it, and the
        # request waits for its time in `wait_for_slot` (see `GatedProvider`): the writes made
        # between pacing and sending then cannot bunch requests of several workers together.
        self.early = early
        self._stamps: deque[float] = deque()
        self._handed: dict[int, float] = {}
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self.rate is None:
            return
        if self.early:
            with self._lock:
                at = self._reserve()
                self._handed[threading.get_ident()] = at
            self.clock.sleep(at - self.early - self.clock.monotonic())
            return
        window = WINDOW_SECONDS + MARGIN_SECONDS
        with self._lock:
            while True:
                now = self.clock.monotonic()
                # Same expression as the wait below: `now - stamp >= window` can round the other
                # way, keeping a stamp whose window is over and letting the deque outgrow `rate`.
                while self._stamps and self._stamps[0] + window <= now:
                    self._stamps.popleft()
                wait = self._blocked_until - now
                if len(self._stamps) >= self.rate:
                    wait = max(wait, self._stamps[0] + window - now)
                if wait <= 0:
                    self._stamps.append(now)
                    return
                self.clock.sleep(wait)

    def penalize(self) -> None:
        with self._lock:
            self._blocked_until = self.clock.monotonic() + WINDOW_SECONDS + MARGIN_SECONDS

    def _reserve(self) -> float:
        """The earliest time a send fits in the window, stamped as taken (under the lock)."""
        assert self.rate is not None
        now = self.clock.monotonic()
        window = WINDOW_SECONDS + MARGIN_SECONDS
        while self._stamps and self._stamps[0] + window <= now:
            self._stamps.popleft()
        at = max(now, self._blocked_until)
        if len(self._stamps) >= self.rate:
            at = max(at, self._stamps[-int(self.rate)] + window)
        self._stamps.append(at)
        return at

    def wait_for_slot(self) -> None:
        """Hold the request until the time `acquire` reserved for this thread; one that gets
        there too late gives its time back and takes the next one free."""
        with self._lock:
            at = self._handed.pop(threading.get_ident(), None)
        while at is not None:
            self.clock.sleep(at - self.clock.monotonic())
            with self._lock:
                if self.clock.monotonic() <= at + LATE_SECONDS and at >= self._blocked_until:
                    return
                if at in self._stamps:
                    self._stamps.remove(at)
                at = self._reserve()


class SlotGate(Protocol):
    """A pacer that hands out a slot early and holds the request until the slot itself."""

    def wait_for_slot(self) -> None: ...


class GatedProvider:
    """Sends each request at the exact slot its pacer handed out.

    The pacer's `acquire` returns a little before the slot, so the database writes the cycle does
    between pacing and sending (the fenced renewal, the send ticket) cannot push the request past
    its slot and into the next daemon's.
    """

    def __init__(self, provider: SmsProvider, gate: SlotGate) -> None:
        self.provider = provider
        self.gate = gate

    def send(self, to: str, source: str, body: str) -> str:
        self.gate.wait_for_slot()
        return self.provider.send(to, source, body)
