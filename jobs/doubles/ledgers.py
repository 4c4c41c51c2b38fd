"""In-memory spent ids and account hold, with the contracts of `jobs.mongo.spent` and
`jobs.mongo.account`, for the in-memory outbox."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from jobs.clock import Clock
from jobs.ports import Outcome
from jobs.rules.hold import PROBE_BASE, PROBE_CAP, Hold, probe_delay


class MemorySpentIds:
    """Spent signed ids in a dictionary behind a lock (see jobs/mongo/spent.py)."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def take(self, spent_id: str, message_id: Any, token: str) -> bool:
        """Spend `spent_id` on the request of `token`; False when it is already spent."""
        with self._lock:
            held = self._records.get(spent_id)
            if held is not None and held["kind"] != "message":
                return False
            taken = held is not None and held["token"] != token
            if taken and held is not None and held["outcome"] != Outcome.NOT_SENT:
                return False
            self._records[spent_id] = {"kind": "message", "token": token, "outcome": None}
            return True

    def settle(self, spent_id: str, token: str, outcome: Outcome) -> None:
        """Record what came of the request that spent `spent_id`."""
        with self._lock:
            held = self._records.get(spent_id)
            if held is not None and held.get("token") == token:
                held["outcome"] = outcome

    def sent(self, spent_id: str, token: str, provider_id: str) -> None:
        """Flowroute accepted the request of `token`: its record holds the 202 for good."""
        with self._lock:
            held = self._records.get(spent_id)
            if held is not None and held.get("token") == token:
                held.update(outcome=Outcome.SENT, provider_id=provider_id)

    def flush(self) -> int:
        """Nothing kept: `sent` writes at once here."""
        return 0

    def open_campaign(self, spent_id: str, message_id: Any) -> bool:
        """Start (or resume) a fan-out; False once it ended."""
        with self._lock:
            held = self._records.setdefault(spent_id, {"kind": "broadcast", "done": False})
            return held["kind"] == "broadcast" and not held["done"]

    def close_campaign(self, spent_id: str) -> None:
        """A fan-out ended: a copy of its request must not start another."""
        with self._lock:
            held = self._records.get(spent_id)
            if held is not None:
                held["done"] = True


class MemoryHolds:
    """The account hold in memory (see jobs/mongo/account.py)."""

    def __init__(
        self, clock: Clock, base: timedelta = PROBE_BASE, cap: timedelta = PROBE_CAP
    ) -> None:
        self.clock = clock
        self.base, self.cap = base, cap
        self._held: Hold | None = None
        self._lock = threading.Lock()

    def current(self) -> Hold | None:
        return self._held

    def hold(self, code: str, detail: str) -> Hold:
        """Record a refusal; each one in a row waits longer before the next probe."""
        with self._lock:
            now = self.clock.now()
            failures = self._held.failures + 1 if self._held is not None else 1
            since = self._held.since if self._held is not None else now
            probe_at = now + probe_delay(failures, self.base, self.cap)
            self._held = Hold(since, code, detail, probe_at, failures)
            return self._held

    def release(self) -> bool:
        with self._lock:
            held, self._held = self._held, None
            return held is not None
