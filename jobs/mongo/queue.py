"""The claim queue: the order of the queued messages, kept under `_id` in its own collection,
since the `_id` index is the one index every server scans in order and stops early at.

DocumentDB answers a query on any other index with every match gathered first, so reading the
first due messages of the outbox costs in proportion to the whole queue. Here each queued message
has two small entries, written after the write that queued it:

- `a|<slot>|<due ms>|<message>`: claim order: the daemon's replies, then the highest priority,
  then the longest due;
- `b|<slot>|<share digest>|<due ms>|<message>`: the same, one user and campaign at a
  time, so the others' turns are found without reading past a broadcast's recipients.

An entry is a hint, never the truth: a claim still takes a message by its id only while it is
queued and due, so an entry that is stale (the message was claimed, cancelled or queued again at
another time), forged or doubled can change the order of claims but never send anything that
was not due. Entries are removed once read and tried, by their token, so an entry written again
meanwhile stays. A message queued without its entries (by an earlier version, or by a daemon
that died between the two writes, or by anyone with write access to the outbox) is found by
`repair`, which reads the head of the outbox the slow way: at the first claim, whenever the
entries run short after a repair that found some missing, and every few seconds, less often as
the queue grows (its reads take 1% of the time at most, and it runs at least every five minutes).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import bson
import structlog
from bson import ObjectId
from pymongo import ASCENDING, DeleteOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from jobs.clock import Clock
from jobs.model import State
from jobs.rules import fairness, replies

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")

QUEUE = "outbox_queue"
# The fields of a claim candidate that hold the entry it was read from, and its share digest.
ENTRY = "_entry"
SHARE = "_share"
# The daemon's replies take slot 0; priorities 100..-100 slots 1..201; anything else comes last.
TOP_PRIORITY = 100
LAST_SLOT = 2 * TOP_PRIORITY + 2
# Outbox documents a repair reads, in claim order, to find those without entries.
REPAIR_PAGE = 1_000
# How often a repair runs while entries are not running short (seconds, monotonic): every few
# seconds, or as seldom as keeps its reads to 1% of the time, at most every five minutes.
REPAIR_SECONDS = (5.0, 300.0)
REPAIR_SHARE = 0.01
# Entries written in one bulk command; DocumentDB refuses more than 25,000 operations.
WRITE_BATCH = 10_000
# Reads of entries in one claim at most: every priority slot, and some junk entries to drop.
MAX_READS = 2 * (LAST_SLOT + 1)
# Shares looked at for the others' turns in one claim, per turn wanted.
SHARES_PER_TURN = 4
DUPLICATE_KEY = 11000


def slot(doc: Mapping[str, Any]) -> int:
    """A message's slot in claim order: 0 for the daemon's replies, whatever their priority
    (jobs/rules/fairness.py), then 1 for the highest priority (100) to 201 for the lowest
    (-100). A priority that is not a whole number in that range takes the nearest; one that is
    not a number comes after them all."""
    if fairness.is_reply(doc):
        return 0
    priority = doc.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int | float):
        return LAST_SLOT
    if isinstance(priority, float) and not math.isfinite(priority):
        return 1 if priority > 0 else LAST_SLOT
    whole = max(-TOP_PRIORITY, min(TOP_PRIORITY, math.floor(priority)))
    return 1 + TOP_PRIORITY - whole


def due_ms(due: Any) -> int | None:
    """A due time as milliseconds since 1970, within 13 digits; None when it is not a time (such
    a message is never due)."""
    if not isinstance(due, datetime):
        return None
    aware = due if due.tzinfo else due.replace(tzinfo=UTC)
    return max(0, min(10**13 - 1, math.floor(aware.timestamp() * 1000)))


def _message_part(doc_id: Any) -> str:
    """A message's place among those of one priority and due time: an ObjectId in the order it
    was made (as the outbox's own order has it), any other id by a digest of it."""
    if isinstance(doc_id, ObjectId):
        return str(doc_id)
    return "z" + hashlib.sha256(bson.encode({"v": doc_id})).hexdigest()[:32]


def share_digest(doc: Mapping[str, Any]) -> str:
    """The digest of whose turn a message counts against (jobs/rules/fairness.py), as its
    entries are keyed."""
    user, campaign = fairness.share(doc)
    return hashlib.sha256(f"{user}\x00{campaign}".encode()).hexdigest()[:16]


def entries(doc: Mapping[str, Any], token: str) -> list[Doc]:
    """The two entries of a queued message (none when it has no due time)."""
    due = due_ms(doc.get("due_at"))
    if due is None:
        return []
    place = slot(doc)
    message = _message_part(doc["_id"])
    share = share_digest(doc)
    by_order = f"a|{place:03d}|{due:013d}|{message}"
    by_share = f"b|{place:03d}|{share}|{due:013d}|{message}"
    return [
        {"_id": by_order, "o": by_share, "m": doc["_id"], "t": token},
        {"_id": by_share, "o": by_order, "m": doc["_id"], "t": token},
    ]


def candidate(entry: Mapping[str, Any]) -> Doc:
    """A claim candidate (what jobs/rules/fairness.py orders) from an entry, all of it read from
    the keys: the slot stands for the priority, the share digest for the user and campaign."""
    keys = [str(entry.get("_id")), str(entry.get("o"))]
    by_order = next((k for k in keys if k.startswith("a|")), "")
    by_share = next((k for k in keys if k.startswith("b|")), "")
    place, due = _slot_of(by_order), _due_of(by_order)
    parts = by_share.split("|")
    share = parts[2] if len(parts) == 5 else ""
    return {
        "_id": entry.get("m"),
        "priority": TOP_PRIORITY + 1 - (LAST_SLOT if place is None else place),
        "due_at": datetime.fromtimestamp((due or 0) / 1000, UTC),
        "user": replies.USER if place == 0 else share,
        "campaign": "",
        SHARE: share,
        ENTRY: entry,
    }


def _rewrite(entry: Doc) -> UpdateOne:
    """The write that puts `entry` in place of one with its key (a fresh token, so a claim
    that read the older one does not remove it)."""
    fields = {name: value for name, value in entry.items() if name != "_id"}
    return UpdateOne({"_id": entry["_id"]}, {"$set": fields}, upsert=True)


def _slot_of(key: str) -> int | None:
    part = key[2:5]
    return int(part) if len(key) > 5 and part.isdigit() and key[5] == "|" else None


def _due_of(key: str) -> int | None:
    """The due time of an `a|` key, in milliseconds."""
    part = key[6:19]
    return int(part) if len(key) > 20 and part.isdigit() and key[19] == "|" else None


class ClaimQueue:
    """The claim queue of one outbox (see the module's docstring)."""

    def __init__(self, db: Database[Doc], clock: Clock) -> None:
        self.entries: Collection[Doc] = db[QUEUE]
        self.clock = clock
        self.repair_page = REPAIR_PAGE
        self._repair_at = -math.inf
        self._missing = True  # whether the last repair found messages without entries

    def offer(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Give the queued documents among `docs` their entries, each under a fresh token. A
        failure is logged, not raised: the write that queued them stands, and a repair finds
        them."""
        made = [e for doc in docs if doc.get("state") == State.QUEUED.value
                for e in entries(doc, uuid.uuid4().hex)]  # fmt: skip
        for start in range(0, len(made), WRITE_BATCH):
            try:
                self._write(made[start : start + WRITE_BATCH])
            except PyMongoError as exc:
                self._missing = True
                log.warning("queue.not_written", entries=len(made), error=str(exc)[:300])
                return

    def _write(self, made: list[Doc], *, replace: bool = True) -> int:
        """Insert entries; one whose key is there already is replaced (`replace`) or left.
        Returns how many were inserted."""
        try:
            return len(self.entries.insert_many(made, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(err.get("code") != DUPLICATE_KEY for err in errors):
                raise
            if replace:
                again = [made[err["index"]] for err in errors]
                ops = [_rewrite(entry) for entry in again]
                self.entries.bulk_write(ops)
            return int(exc.details.get("nInserted", 0))

    def heads(self, now: datetime, limit: int) -> list[Doc]:
        """The first `limit` due entries in claim order, read by ranges of `_id`: from the top,
        then past each priority whose due entries run out (one read while the top priority
        has `limit` due)."""
        found: list[Doc] = []
        now_ms = due_ms(now) or 0
        start = "a|"
        for _ in range(MAX_READS):
            if len(found) >= limit:
                break
            page = self._range(start, "a}", limit - len(found))
            for entry in page:
                key = str(entry["_id"])
                place, due = _slot_of(key), _due_of(key)
                if place is None or due is None:  # not an entry this queue wrote
                    self.entries.delete_one({"_id": entry["_id"]})
                    break
                if due > now_ms:  # this slot has no more due: on to the next
                    start = f"a|{place + 1:03d}|"
                    break
                found.append(entry)
            else:
                return found  # the whole queue was read
        return found

    def other_turns(self, now: datetime, place: int, taken: set[str], limit: int) -> list[Doc]:
        """The first due entry of each other user and campaign in one slot, up to
        `limit`, skipping the shares whose digests are in `taken`: the others' turns when one
        share fills every candidate. One read per share looked at."""
        found: list[Doc] = []
        start, end = f"b|{place:03d}|", f"b|{place:03d}}}"
        now_ms = due_ms(now) or 0
        for _ in range(limit * SHARES_PER_TURN):
            first = self.entries.find_one({"_id": {"$gte": start, "$lt": end}}, sort=[("_id", 1)])
            if first is None:
                break
            parts = str(first["_id"]).split("|")
            if len(parts) != 5 or not parts[3].isdigit():
                self.entries.delete_one({"_id": first["_id"]})
                continue
            if parts[2] not in taken and int(parts[3]) <= now_ms:
                found.append(first)
                if len(found) >= limit:
                    break
            start = f"b|{place:03d}|{parts[2]}}}"  # past this share's entries
        return found

    def _range(self, low: str, high: str, limit: int) -> list[Doc]:
        query = {"_id": {"$gte": low, "$lt": high}}
        return list(self.entries.find(query).sort("_id", ASCENDING).limit(limit))

    def drop(self, tried: Iterable[Mapping[str, Any]]) -> None:
        """Remove the entries of candidates that were tried (claimed, taken by another worker,
        or no longer due), both of each, unless written again since they were read. One
        command, each delete found by `_id` (a delete on `$in` scans the collection)."""
        ops = [
            DeleteOne({"_id": {"$eq": key}, "t": {"$eq": entry.get("t")}})
            for entry in tried
            for key in (entry.get("_id"), entry.get("o"))
        ]
        if not ops:
            return
        try:
            self.entries.bulk_write(ops, ordered=False)
        except PyMongoError as exc:  # left stale: the next claim that reads them removes them
            log.warning("queue.not_dropped", entries=len(ops), error=str(exc)[:300])

    def forget(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Remove the entries of messages that left the queue for good (cancelled), found by
        the keys their fields give, in bulk."""
        keys = [e["_id"] for doc in docs for e in entries(doc, "")]
        for start in range(0, len(keys), WRITE_BATCH):
            ops = [DeleteOne({"_id": key}) for key in keys[start : start + WRITE_BATCH]]
            try:
                self.entries.bulk_write(ops, ordered=False)
            except PyMongoError as exc:  # left stale: claims find them cancelled and remove them
                log.warning("queue.not_dropped", entries=len(ops), error=str(exc)[:300])
                return

    def repair_due(self, short: bool) -> bool:
        """Whether a claim should repair first: never repaired yet, the last repair found
        messages without entries and the entries ran `short`, or it is time."""
        return self.clock.monotonic() >= self._repair_at or (short and self._missing)

    def repair(self, head: list[Doc], spent: float) -> int:
        """Give entries to the messages of `head` (the first due messages of the outbox, read in
        claim order, which took `spent` seconds) that have none; returns how many entries it
        wrote. A document written straight into the queue by something other than a daemon
        is so found too, and the claim then checks it like any other."""
        made = [e for doc in head for e in entries(doc, uuid.uuid4().hex)]
        written = 0
        for start in range(0, len(made), WRITE_BATCH):
            written += self._write(made[start : start + WRITE_BATCH], replace=False)
        self._missing = written > 0
        shortest, longest = REPAIR_SECONDS
        wait = min(max(spent / REPAIR_SHARE, shortest), longest)
        self._repair_at = self.clock.monotonic() + wait
        if written:
            log.info("queue.repaired", entries=written, read_seconds=round(spent, 3))
        return written
