"""Spent ids: the daemon's record of every signed id it has sent (or fanned out), so a copy of a
signed document re-inserted after the original is refused, whatever the outbox holds.

The collection is the daemon's alone by role (`jobs.mongo.roles`): producers and operators
cannot write it, so deleting a sent message and inserting it again does not clear its record.
Records are kept for good: a replay is refused however late it comes. A record that holds
Flowroute's 202 (its provider id) is never released, whatever the outbox says.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from jobs.clock import Clock
from jobs.mongo.connection import adapter
from jobs.ports import Outcome

SPENT = "sent_ids"
# A record an operator's retry released: the same message (not a copy) may spend it again.
RELEASED = "released"


@adapter
class SpentIds:
    """One record per signed id, keyed by it.

    A message's record names the claim token of the request that spent it, and says when that
    request is known not to have left (`outcome: not_sent`); until then it counts as sent. It
    is inserted after the in-flight mark and just before the request leaves; the insert is
    atomic on the unique `_id`, so of two copies only one sends. A later claim of the same id
    takes the record over only when the request that holds it is known not to have left (a 5xx,
    a 429, an account hold), which is how a retried message sends while a copy of a sent one is
    refused, or when an operator's retry released it for that very message (`release`).
    """

    def __init__(self, db: Database[dict[str, Any]], clock: Clock) -> None:
        self.spent: Collection[dict[str, Any]] = db[SPENT]
        self.clock = clock
        # The 202s not yet written, by spent id and token: a write retried keeps one.
        self._accepted: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def take(self, spent_id: str, message_id: Any, token: str) -> bool:
        """Spend `spent_id` on the request of `token`; False when it is already spent."""
        record = {"message_id": message_id, "token": token, "outcome": None}
        record["at"] = self.clock.now()
        try:
            self.spent.insert_one({"_id": spent_id, "kind": "message", **record})
            return True
        except DuplicateKeyError:
            pass
        held = self.spent.find_one({"_id": spent_id})
        if held is None or held.get("kind") != "message":
            return False
        if held.get("token") == token:
            return True
        released = held.get("outcome") == RELEASED and held.get("message_id") == message_id
        if held.get("outcome") != Outcome.NOT_SENT.value and not released:
            return False
        taken = self.spent.update_one(
            {"_id": spent_id, "token": held.get("token"), "outcome": held.get("outcome")},
            {"$set": record, "$unset": {"provider_id": "", "settled_at": ""}},
        )
        return taken.modified_count == 1

    def release(self, spent_id: str, message_id: Any, *, by: str, at: datetime) -> bool:
        """An operator's retry of message `message_id`, which ended `unknown`: its record may be
        spent once more by that message alone (a copy under another id stays refused). Who
        released it, when, and what the record held are appended to its `releases`. Called by
        the store's `retry` only; False when the record is not this message's."""
        held = self.spent.find_one({"_id": spent_id, "kind": "message", "message_id": message_id})
        if held is None:
            return False
        evidence = {
            "by": by, "at": at, "token": held.get("token"), "outcome": held.get("outcome"),
            "spent_at": held.get("at"),
        }  # fmt: skip
        # A record that holds Flowroute's 202 stays spent: the message was sent, and a retry
        # of it is refused as a replay rather than texting the person twice.
        released = self.spent.update_one(
            {
                "_id": spent_id,
                "message_id": message_id,
                "token": held.get("token"),
                "provider_id": {"$exists": False},
            },
            {"$set": {"outcome": RELEASED}, "$push": {"releases": evidence}},
        )
        return released.modified_count == 1

    def settle(self, spent_id: str, token: str, outcome: Outcome) -> None:
        """Record what came of the request that spent `spent_id`."""
        self.spent.update_one(
            {"_id": spent_id, "token": token}, {"$set": {"outcome": outcome.value}}
        )

    def sent(self, spent_id: str, token: str, provider_id: str) -> None:
        """Flowroute accepted the request of `token` with `provider_id` (a 202). Kept with the
        cycle's other 202s and written by `flush`, in one command per cycle, so the record
        costs no command per message; until then (or if the daemon dies first) the record says
        the request may have left, and reconciliation finds it in Flowroute's records."""
        change: dict[str, Any] = {"outcome": Outcome.SENT.value, "provider_id": provider_id}
        change["settled_at"] = self.clock.now()
        with self._lock:
            self._accepted[spent_id, token] = change

    def flush(self) -> int:
        """Write the 202s kept by `sent`; returns how many. Kept for the next call if the
        database fails."""
        with self._lock:
            pending, self._accepted = self._accepted, {}
        if not pending:
            return 0
        try:
            self._write(pending)
        except PyMongoError:
            with self._lock:
                self._accepted = {**pending, **self._accepted}
            raise
        return len(pending)

    def _write(self, pending: dict[tuple[str, str], dict[str, Any]]) -> None:
        updates = [UpdateOne({"_id": i, "token": t}, {"$set": c}) for (i, t), c in pending.items()]
        try:
            self.spent.bulk_write(updates, ordered=False)
        except (TypeError, NotImplementedError):
            # An in-process database without pymongo 4.9's bulk operations (mongomock).
            for (spent_id, token), change in pending.items():
                self.spent.update_one({"_id": spent_id, "token": token}, {"$set": change})

    def record_of(self, spent_id: str, message_id: Any) -> dict[str, Any] | None:
        """The record of the requests that spent `spent_id` for message `message_id`."""
        return self.spent.find_one({"_id": spent_id, "kind": "message", "message_id": message_id})

    def proven_not_sent(self, spent_id: str, message_id: Any) -> bool:
        """Reconciliation proved that Flowroute never had the message: its in-doubt spend is
        released, so the message may be sent again (once: the next claim spends it anew).
        A record that holds a 202 (`outcome: sent` or a provider id) is never released:
        False, and the message must not be queued again."""
        released = self.spent.update_one(
            {"_id": spent_id, "kind": "message", "message_id": message_id,
             "outcome": {"$ne": Outcome.SENT.value}, "provider_id": {"$exists": False}},
            {"$set": {"outcome": Outcome.NOT_SENT.value}},
        )  # fmt: skip
        if released.matched_count:
            return True
        held = self.spent.find_one({"_id": spent_id})
        return held is None or not (
            held.get("outcome") == Outcome.SENT.value or held.get("provider_id")
        )

    def open_campaign(self, spent_id: str, message_id: Any) -> bool:
        """Start (or resume) the fan-out of broadcast request `spent_id`; False once it ended."""
        try:
            self.spent.insert_one(
                {"_id": spent_id, "kind": "broadcast", "message_id": message_id,
                 "at": self.clock.now(), "done": False}
            )  # fmt: skip
            return True
        except DuplicateKeyError:
            held = self.spent.find_one({"_id": spent_id})
            return held is not None and held.get("kind") == "broadcast" and not held.get("done")

    def close_campaign(self, spent_id: str) -> None:
        """The fan-out of `spent_id` ended: a copy of its request must not start another."""
        self.spent.update_one({"_id": spent_id}, {"$set": {"done": True}})
