"""The outbox store on MongoDB: the claim, over the parts of the store it is made of (its
collections and fenced writes, intake, interventions, a broadcast's children)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo.errors import ConnectionFailure, OperationFailure

from jobs.errors import StoreUnavailable
from jobs.mongo import queue
from jobs.mongo.children import OutboxChildren
from jobs.mongo.claim import candidates, claim_by_id, quarantine, reply_lane
from jobs.mongo.connection import adapter
from jobs.mongo.intake import OutboxIntake
from jobs.mongo.interventions import OutboxInterventions
from jobs.mongo.poison import caused_by_document
from jobs.mongo.projection import OUTBOX, STATUS
from jobs.rules import fairness

Doc = dict[str, Any]
log = structlog.get_logger("sms_outbox.store")

# A claim reads this many candidates per message wanted, so some may be lost to other daemons.
CANDIDATES_PER_CLAIM = 2
# Reads of candidates in one claim when other daemons took all of them first.
CLAIM_ROUNDS = 3


@adapter
class OutboxStore(OutboxIntake, OutboxInterventions, OutboxChildren):
    """The outbox store the daemon runs on (the `Outbox` port of jobs/ports/outbox.py): its
    collections and fenced writes (jobs/mongo/documents.py, jobs/ports/writes.py), intake,
    interventions and a broadcast's children, and the claim.
    """

    def claim(self, limit: int, lease: timedelta) -> list[Doc]:
        """Claim up to `limit` due documents: replies first, then highest priority and oldest
        due, users and campaigns taking turns at equal priority (jobs/rules/fairness.py).

        Candidates are read from the claim queue (jobs/mongo/queue.py), then each is claimed by
        its id only while it is queued and due. Candidates another daemon took first are
        skipped, and the candidates read again while more are due, so a
        racing daemon never comes back empty while work is due. When the database fails
        part-way, what was claimed so far is returned rather than lost to its lease: the caller
        sends it, or hands it back once the database returns.
        """
        claimed: list[Doc] = []
        try:
            for _ in range(CLAIM_ROUNDS):
                now = self.clock.now()
                order, more = self._candidates(now, limit - len(claimed))
                lost = self._claim_each(order, now, lease, limit, claimed)
                if len(claimed) >= limit or not order or not (lost and more):
                    break
        except ConnectionFailure:
            if not claimed:
                raise
            log.warning("claim.interrupted", claimed=len(claimed))
        try:
            self.project_many(claimed)
        except (ConnectionFailure, StoreUnavailable):
            # Left unsynced: resync writes these copies once the database is back.
            log.warning("claim.interrupted", claimed=len(claimed))
        return claimed

    def _candidates(self, now: datetime, wanted: int) -> tuple[list[Doc], bool]:
        """The candidates of one claim in claim order, and whether more are due than were read.
        They are read from the claim queue (jobs/mongo/queue.py), in reads whose cost does not
        grow with the queue; the outbox itself is read the slow way only to repair the queue."""
        read = wanted * CANDIDATES_PER_CLAIM
        heads = self.queue.heads(now, read)
        if self.queue.repair_due(short=len(heads) < read) and self._repair(now):
            heads = self.queue.heads(now, read)
        found = [queue.candidate(entry) for entry in heads]
        more = len(found) == read
        senders = [doc for doc in found if not fairness.is_reply(doc)]
        if more and senders:
            top = queue.slot(senders[0])
            level = [doc for doc in senders if queue.slot(doc) == top]
            shares = {doc[queue.SHARE] for doc in level}
            if len(shares) == 1:
                # One sender fills every candidate: look past it for the others' turns.
                turns = self.queue.other_turns(now, top, shares, wanted)
                found += [queue.candidate(entry) for entry in turns]
        unique = {_id_key(doc["_id"]): doc for doc in found}
        return fairness.take_turns(list(unique.values())), more

    def _repair(self, now: datetime) -> int:
        """Give entries to the first due messages that have none (see jobs/mongo/queue.py): the
        due replies, then the rest in claim order."""
        page = self.queue.repair_page
        began = self.clock.monotonic()
        head = reply_lane(self.outbox, now, page) + candidates(self.outbox, now, page)
        return self.queue.repair(head, self.clock.monotonic() - began)

    def _claim_each(
        self, order: list[Doc], now: datetime, lease: timedelta, limit: int, claimed: list[Doc]
    ) -> int:
        """Claim candidates in order until `claimed` holds `limit`; returns how many were lost
        to another worker (or were no longer queued and due). The queue entries of every
        candidate tried are dropped."""
        lost = 0
        tried: list[Doc] = []
        try:
            for candidate in order:
                if len(claimed) >= limit:
                    break
                doc = self._claim_one(candidate["_id"], now, lease)
                if queue.ENTRY in candidate:  # not one whose claim did not get an answer
                    tried.append(candidate[queue.ENTRY])
                if doc is None:
                    lost += 1
                elif doc is not _SET_ASIDE:
                    claimed.append(doc)
        finally:
            self.queue.drop(tried)
        return lost

    def _claim_one(self, doc_id: Any, now: datetime, lease: timedelta) -> Any:
        """The claimed document, None when it is not there to claim, or `_SET_ASIDE`."""
        try:
            return claim_by_id(self.outbox, doc_id, now, lease)
        except OperationFailure as exc:
            if not caused_by_document(exc):
                raise
            doc, rejected = quarantine(self.outbox, self.status, now, lease, doc_id)
            if rejected is not None:
                self.project(rejected)
            return _SET_ASIDE if doc is None else doc


__all__ = ["OUTBOX", "STATUS", "OutboxStore"]

# What `_claim_one` returns for a document it rejected instead of claiming.
_SET_ASIDE = object()


def _id_key(value: Any) -> Any:
    """An `_id` as a dictionary key: itself, or for an id Python cannot hash (a document, a
    Decimal128, which a producer may insert) its type and its representation."""
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, repr(value))
    return value
