"""The outbox store on MongoDB: the claim, over the parts of the store it is made of (its
collections and fenced writes, intake, interventions, a broadcast's children)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo.errors import ConnectionFailure, OperationFailure

from jobs.errors import StoreUnavailable
from jobs.mongo.children import OutboxChildren
from jobs.mongo.claim import candidates, claim_by_id, other_shares, quarantine, reply_lane
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

        Candidates are read in one query, then each is claimed by its id and state, so the
        server orders the queue once per batch rather than once per message. Candidates another
        daemon took first are skipped, and the candidates read again while more are due, so a
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
        """The candidates of one claim in claim order, and whether more are due than were read."""
        read = wanted * CANDIDATES_PER_CLAIM
        lane = reply_lane(self.outbox, now, wanted)
        found = candidates(self.outbox, now, read)
        more = len(found) == read
        senders = [doc for doc in found if not fairness.is_reply(doc)]
        if more and senders:
            top = senders[0].get("priority")
            shares = {fairness.share(doc) for doc in senders if doc.get("priority") == top}
            if len(shares) == 1:
                # One sender fills every candidate: look past it for the others' turns.
                found += other_shares(self.outbox, now, shares, wanted)
        unique = {_id_key(doc["_id"]): doc for doc in [*lane, *found]}
        return fairness.take_turns(list(unique.values())), more

    def _claim_each(
        self, order: list[Doc], now: datetime, lease: timedelta, limit: int, claimed: list[Doc]
    ) -> int:
        """Claim candidates in order until `claimed` holds `limit`; returns how many were lost
        to another worker."""
        lost = 0
        for candidate in order:
            if len(claimed) >= limit:
                break
            try:
                doc = claim_by_id(self.outbox, candidate["_id"], now, lease)
            except OperationFailure as exc:
                if not caused_by_document(exc):
                    raise
                doc, rejected = quarantine(self.outbox, self.status, now, lease, candidate["_id"])
                if rejected is not None:
                    self.project(rejected)
                if doc is None:
                    continue
            if doc is None:
                lost += 1
            else:
                claimed.append(doc)
        return lost


__all__ = ["OUTBOX", "STATUS", "OutboxStore"]


def _id_key(value: Any) -> Any:
    """An `_id` as a dictionary key: itself, or for an id Python cannot hash (a document, a
    Decimal128, which a producer may insert) its type and its representation."""
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, repr(value))
    return value
