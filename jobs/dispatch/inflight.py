"""Sends in flight: a bounded pool of worker threads that take claimed messages through their
steps while the cycle goes on claiming.

Threads rather than asyncio: every step of a message's path (the fenced writes through pymongo,
the pacer, the HTTP request through httpx) is blocking code that is already thread-safe, so a
pool runs the very same path concurrently; the work is waiting on the network, where the GIL is
released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

Work = Callable[[], str]


class InFlight:
    """Up to `workers` messages handled at once; `harvest` returns the states of those done."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send")
        self._pending: set[Future[str]] = set()
        self._done: list[Future[str]] = []
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Messages handed to the pool and not yet harvested as done."""
        with self._lock:
            return len(self._pending)

    def submit(self, work: Work) -> None:
        """Hand one message's handling to the pool."""
        future = self._pool.submit(work)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[str]) -> None:
        with self._lock:
            if future in self._pending:
                self._pending.discard(future)
                self._done.append(future)

    def wait_below(self, limit: int, stopping: Callable[[], bool]) -> None:
        """Block until no more than `limit` messages are in flight (or the daemon stops)."""
        while not stopping():
            with self._lock:
                pending = set(self._pending)
            if len(pending) <= limit:
                return
            wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)

    def harvest(self) -> list[str]:
        """The states of the messages finished since the last call (a worker's own exception is
        raised here, once)."""
        with self._lock:
            done, self._done = self._done, []
        return [future.result() for future in done]

    def drain(self) -> None:
        """Wait for every message in flight to finish."""
        with self._lock:
            pending = set(self._pending)
        wait(pending)

    def close(self) -> None:
        """Finish what is in flight and stop the workers."""
        self._pool.shutdown(wait=True)
