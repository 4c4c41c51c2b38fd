"""The `pacing` collection of one Flowroute account: blocks of slots won by insert, and the
penalty a 429 sets for every daemon (see jobs/mongo/fleet_pacing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pymongo import DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

log = structlog.get_logger("sms_outbox.pacing")

PACING = "pacing"
EXPIRY = timedelta(hours=1)


class PacingBlocks:
    """One daemon's reads and writes of its account's blocks; `commands` counts them."""

    def __init__(self, db: Database[dict[str, Any]], account: str, holder: str) -> None:
        self.pacing: Collection[dict[str, Any]] = db[PACING]
        self.account = account
        self.holder = holder
        self.commands = 0

    def ensure_indexes(self) -> None:
        """The frontier query's index, and expiry of old blocks where the server supports TTL."""
        self.commands += 2
        self.pacing.create_index([("account", 1), ("block", DESCENDING)], name="account_block")
        try:
            self.pacing.create_index("expires_at", name="expiry", expireAfterSeconds=0)
        except OperationFailure as exc:
            # Old blocks are also deleted by the daemons themselves (`forget_before`).
            log.info("pacing.no_expiry", error=exc.code)

    def insert(self, block: int, now: float, **extra: Any) -> bool:
        """Win `block`: False when another daemon holds it."""
        self.commands += 1
        try:
            self.pacing.insert_one(self._doc(block, now, **extra))
        except DuplicateKeyError:
            return False
        return True

    def forget_before(self, block: int) -> None:
        """Delete the account's blocks before `block` (servers without TTL keep them)."""
        self.commands += 1
        self.pacing.delete_many({"account": self.account, "block": {"$lt": block}})

    def frontier(self, current: int, ahead: int) -> tuple[int, bool]:
        """The last block taken from `current` on (or `current - 1`), and whether no other
        daemon took one after this daemon's last."""
        self.commands += 1
        doc = self.pacing.find_one(
            {"account": self.account, "block": {"$gte": current, "$lte": current + ahead}},
            projection={"block": 1, "holder": 1},
            sort=[("block", DESCENDING)],
        )
        if doc is None:
            return current - 1, True
        return int(doc["block"]), doc.get("holder") == self.holder

    def penalty(self) -> float | None:
        """Until when (fleet time) the account's last 429 stops every daemon, if it was set."""
        self.commands += 1
        doc = self.pacing.find_one({"_id": self._penalty_id()})
        return None if doc is None else float(doc.get("until", 0.0))

    def share_penalty(self, now: float, until: float, blocks: range) -> None:
        """Stop every daemon until `until`, and take the penalty's blocks so that none reserves
        them later."""
        self.commands += 2
        key = {"_id": self._penalty_id()}
        update = {"$max": {"until": until}, "$set": {"account": self.account}}
        try:
            self.pacing.update_one(key, update, upsert=True)
        except DuplicateKeyError:  # two first penalties at once
            self.pacing.update_one(key, update)
        docs = [self._doc(b, now, penalty=True) for b in blocks]
        try:
            self.pacing.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    def _doc(self, block: int, now: float, **extra: Any) -> dict[str, Any]:
        at = datetime.fromtimestamp(now, UTC)
        return {
            "_id": f"{self.account}:{block}",
            "account": self.account,
            "block": block,
            "holder": self.holder,
            "reserved_at": at,
            "expires_at": at + EXPIRY,
            **extra,
        }

    def _penalty_id(self) -> str:
        return f"{self.account}:penalty"
