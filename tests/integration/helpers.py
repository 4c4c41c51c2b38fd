"""Helpers for the server-backed tests: seeding, waiting and reading the outcome."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from jobs.clock import SystemClock
from jobs.keys import KeyRing
from jobs.mongo.store import OutboxStore
from jobs.rules import signing

SENDER, SOURCE = "ops", "12065550100"
TERMINAL = {"sent", "delivered", "undelivered", "failed", "rejected", "unknown", "expired"}

Db = Database[dict[str, Any]]


def keys_dir(env: dict[str, str]) -> Path:
    """The signing keys folder a CLI environment points at."""
    return Path(env["SMS_OUTBOX_SECURITY__KEYS_DIR"])


def numbers(count: int, start: int = 0) -> list[str]:
    """`count` distinct valid numbers, spread over a few area codes."""
    areas = ["206", "212", "312", "415", "617", "713", "303", "503"]
    return [f"1{areas[i % len(areas)]}555{(start + i) // len(areas):04d}" for i in range(count)]


def seed(db: Db, recipients: list[str], keys_dir: Path, *, messages: bool = True) -> None:
    """A granted sender with a signing key in `keys_dir`, verified recipients and (by default)
    one signed message to each, inserted as any producer would."""
    OutboxStore(db, SystemClock()).ensure_indexes()
    KeyRing(keys_dir).create_user_key(SENDER)
    db["authorized"].insert_one({"user": SENDER, "source": SOURCE})
    db["users"].insert_many([{"phone": n, "verified": True} for n in recipients])
    if messages:
        enqueue_signed(db, recipients, keys_dir)


def enqueue_signed(db: Db, recipients: list[str], keys_dir: Path) -> None:
    """One message of the granted sender to each recipient, signed with its key in `keys_dir`,
    inserted as any producer would."""
    key = KeyRing(keys_dir).user_key(SENDER) or ""
    docs = [
        {"_id": ObjectId(), "user": SENDER, "to": n, "body": f"hello {i}"}
        for i, n in enumerate(recipients)
    ]
    for doc in docs:
        doc["signature"] = signing.sign(key, doc)
    db["outbox"].insert_many(docs)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds, failing with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def states(db: Db) -> Counter[str]:
    """Messages in `message_status` counted by state."""
    return Counter(doc["state"] for doc in db["message_status"].find({"kind": "message"}))


def all_terminal(db: Db, expected: int) -> bool:
    """True once `expected` messages have a terminal status."""
    counts = states(db)
    return sum(counts[s] for s in TERMINAL) == expected
