"""Read-only reports for operators: counts by state and reason, queues, campaigns, recipients.

Counting uses `aggregate` with `$match` and `$group` only; nothing here writes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING

from jobs.model import State
from jobs.mongo.connection import Db, translating
from jobs.mongo.directory import USERS
from jobs.mongo.projection import OUTBOX, STATUS
from jobs.mongo.status import parse_id
from jobs.rules import progress
from jobs.rules.identity import spellings

Doc = dict[str, Any]
# States and reason codes become metric labels and table rows; anyone who can write to the
# database could invent thousands, so only short plain words count, the rest is "other".
LABEL = re.compile(r"^[a-z0-9_]{1,40}$")
MAX_LABELS = 40
OTHER = "other"
RATE_WINDOW = timedelta(seconds=60)
# A live daemon renews a claim just before each send; one not renewed for this long is stale.
STALE_CLAIM = timedelta(seconds=60)
WAITING = (State.QUEUED.value, State.SENDING.value)


def label(value: Any) -> str:
    """`value` as a bounded label: a short plain word, or "other"; "" for none."""
    if value is None:
        return ""
    text = str(value)
    return text if LABEL.match(text) else OTHER


def _bounded(counts: Counter[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    """Keep the most common keys, folding the rest into "other" keys."""
    kept: Counter[tuple[str, ...]] = Counter()
    for index, (key, count) in enumerate(counts.most_common()):
        kept[key if index < MAX_LABELS else tuple(OTHER for _ in key)] += count
    return dict(kept)


@translating
def states_and_reasons(db: Db) -> dict[tuple[str, str], int]:
    """Every message and broadcast request counted by (state, reason code)."""
    pipeline: list[Doc] = [
        {"$group": {"_id": {"state": "$state", "reason": "$error.code"}, "n": {"$sum": 1}}}
    ]
    counts: Counter[tuple[str, ...]] = Counter()
    for row in db[STATUS].aggregate(pipeline):
        key = row["_id"] if isinstance(row["_id"], dict) else {}
        counts[(label(key.get("state")) or OTHER, label(key.get("reason")))] += int(row["n"])
    return {(k[0], k[1]): v for k, v in _bounded(counts).items()}


@dataclass(frozen=True)
class Queue:
    """Messages due now and waiting for a daemon, and how long the oldest has waited."""

    depth: int
    oldest_due: datetime | None


@translating
def queue(db: Db, now: datetime) -> Queue:
    """The outbox's due messages (queued with `due_at` passed)."""
    query = {"state": State.QUEUED.value, "due_at": {"$lte": now}}
    depth = db[OUTBOX].count_documents(query)
    oldest = db[OUTBOX].find_one(query, {"due_at": 1}, sort=[("due_at", ASCENDING)])
    due = oldest.get("due_at") if oldest else None
    return Queue(depth, due if isinstance(due, datetime) else None)


@dataclass
class CampaignCounts:
    """One campaign: its request and its messages counted by state and by reason."""

    campaign: str
    request: Doc | None = None
    states: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    waiting_due: list[tuple[datetime, str]] = field(default_factory=list)
    sent_recently: int = 0
    rate_since: datetime | None = None  # the first of the recent sends

    def rate(self, now: datetime) -> float:
        """Messages sent per second over the last minute (or since the first of them)."""
        if self.rate_since is None or self.sent_recently < 2:
            return 0.0
        elapsed = (now - self.rate_since).total_seconds()
        return self.sent_recently / min(max(elapsed, 1.0), RATE_WINDOW.total_seconds())

    @property
    def total(self) -> int:
        return sum(self.states.values())


def _count_campaigns(db: Db, ids: list[str]) -> dict[str, CampaignCounts]:
    found = {cid: CampaignCounts(cid) for cid in ids}
    pipeline: list[Doc] = [
        {"$match": {"campaign": ids[0] if len(ids) == 1 else {"$in": ids}}},
        {
            "$group": {
                "_id": {
                    "campaign": "$campaign",
                    "state": "$state",
                    "reason": "$error.code",
                    "provider_code": "$error.provider_code",
                },
                "n": {"$sum": 1},
            }
        },
    ]
    for row in db[STATUS].aggregate(pipeline):
        key = row["_id"] if isinstance(row["_id"], dict) else {}
        counts = found.get(str(key.get("campaign")))
        if counts is None:
            continue
        state, reason, n = label(key.get("state")) or OTHER, label(key.get("reason")), int(row["n"])
        counts.states[state] = counts.states.get(state, 0) + n
        if reason and key.get("provider_code") is not None:  # as `status` shows it: provider:401
            reason = f"{reason}:{label(key['provider_code']) or OTHER}"
        if reason and state not in ("sent", "delivered"):
            counts.reasons[reason] = counts.reasons.get(reason, 0) + n
    for counts in found.values():
        counts.states = dict(sorted(counts.states.items()))
        counts.reasons = dict(sorted(counts.reasons.items()))
    return found


@translating
def campaign(
    db: Db, campaign_id: str, now: datetime, lease: timedelta | None = None
) -> CampaignCounts:
    """A campaign's counts, the due times of its waiting messages and its recent sends.
    `lease` is `dispatch.lease_seconds`: it tells a claim its daemon stopped renewing."""
    counts = _count_campaigns(db, [campaign_id])[campaign_id]
    counts.request = db[STATUS].find_one({"_id": parse_id(campaign_id)}, {"rev": 0})
    if counts.request is None:
        # Inserted by a producer but not admitted by a daemon yet: no status copy exists.
        new = db[OUTBOX].find_one(
            {"_id": parse_id(campaign_id), "audience": {"$exists": True}}, {"user": 1, "state": 1}
        )
        if new is not None:
            counts.request = {**new, "state": new.get("state") or "new"}
    due: list[tuple[datetime, str]] = []
    for state in WAITING:  # equalities only: servers that push down nothing else stay quick
        query = {"state": state, "campaign": campaign_id}
        for doc in db[OUTBOX].find(query, {"due_at": 1, "to": 1, "lease_until": 1}):
            due.append((_earliest(doc, state, now, lease), str(doc.get("to", ""))))
    request_state = (counts.request or {}).get("state")
    if request_state not in progress.REQUEST_SETTLED:
        # Still to be fanned out: the messages not made yet wait too, due now at the earliest.
        due += [(now, "")] * max(_audience(db) - counts.total, 0)
    counts.waiting_due = due
    recent = {"campaign": campaign_id, "sent_at": {"$gte": now - RATE_WINDOW}}
    counts.sent_recently = db[STATUS].count_documents(recent)
    first = db[STATUS].find_one(recent, {"sent_at": 1}, sort=[("sent_at", ASCENDING)])
    if first is not None and isinstance(first.get("sent_at"), datetime):
        counts.rate_since = first["sent_at"]
    return counts


def _earliest(doc: Doc, state: str, now: datetime, lease: timedelta | None) -> datetime:
    """When a waiting message can go at the earliest: a queued one when it is due; one being
    sent now, unless its daemon has not renewed the claim for a while (it died, most likely):
    then when the lease ends and another daemon takes it back."""
    if state == State.QUEUED.value:
        due = doc.get("due_at")
        return due if isinstance(due, datetime) else now
    until = doc.get("lease_until")
    if lease is None or not isinstance(until, datetime):
        return now
    return until if now - (until - lease) > STALE_CLAIM else now


def _audience(db: Db) -> int:
    """About how many people a broadcast fanned out now reaches: the verified records with no
    opt-out (a person stored under two spellings counts twice)."""
    query = {"verified": True, "opted_out": {"$exists": False}}
    return int(db[USERS].count_documents(query))


@translating
def recent_campaigns(db: Db, limit: int = 20) -> list[CampaignCounts]:
    """The newest broadcast requests, each with its messages' counts."""
    requests = list(
        db[STATUS]
        .find({"kind": "broadcast"}, {"rev": 0})
        .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        .limit(limit)
    )
    # Broadcasts no daemon has admitted yet (waiting, or cancelled before that) have no `kind`
    # in their status copy, if they have one; they are the newest.
    query = {"kind": {"$exists": False}, "audience": {"$exists": True}}
    waiting = db[OUTBOX].find(query, {"user": 1, "state": 1, "cancelled": 1}).limit(limit)
    requests = [{**doc, "state": doc.get("state") or "new"} for doc in waiting] + requests
    ids = [str(doc["_id"]) for doc in requests[:limit]]
    found = _count_campaigns(db, ids) if ids else {}
    for doc in requests[:limit]:
        found[str(doc["_id"])].request = doc
    return [found[cid] for cid in ids]


@translating
def recipients(db: Db, campaign_id: str) -> list[Doc]:
    """One status document per message of the campaign, by number."""
    projection = {"to": 1, "state": 1, "error": 1, "created_at": 1, "sent_at": 1, "updated_at": 1}
    return list(db[STATUS].find({"campaign": campaign_id}, projection).sort("to", ASCENDING))


@translating
def messages_to(db: Db, number: str, limit: int = 50) -> list[Doc]:
    """The newest messages to a normalised number, whatever spelling they were addressed to."""
    projection = {"rev": 0, "receipts": 0, "reconciliation": 0}
    query = {"to": {"$in": spellings(number)}, "kind": "message"}
    return list(db[STATUS].find(query, projection).sort("created_at", DESCENDING).limit(limit))
