"""Send tickets: at most one request to Flowroute per claim, even on servers whose
find-and-modify is not atomic."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

from jobs.clock import Clock, SystemClock
from jobs.mongo.connection import adapter
from jobs.ports import Outcome, Verdict, claim_ticket

TICKETS = "send_tickets"
# Far longer than any lease: recovery reads a ticket within minutes of its claim expiring.
RETENTION = timedelta(days=7)
# Where the server has no TTL indexes (FerretDB 1.x), old tickets are deleted this often.
EXPIRE_EVERY_SECONDS = 3600.0
log = structlog.get_logger("sms_outbox.tickets")


@adapter
class SendTickets:
    """A send guard: a ticket is inserted, under a unique id made of the message id and the
    revision its claim produced, before the request leaves, and settled with what came back.

    On MongoDB a claim is atomic and the ticket only records. On a server that answers
    find-and-modify with a read and a separate write (FerretDB 1.x), two workers can both
    believe they hold the same claim; both then hold the same revision, only one ticket insert
    succeeds, and only its holder sends. The tickets also tell lease recovery what happened.
    A TTL index on `opened_at` removes them after RETENTION; where the server has no TTL
    indexes, the guard deletes them itself, at start-up and hourly. The server judges a TTL by
    its own time, so `opened_at` is read from `wall` (the real clock unless a test moves it),
    not from the clock the cycle runs on.
    """

    def __init__(
        self, db: Database[dict[str, Any]], clock: Clock, wall: Clock | None = None
    ) -> None:
        self.tickets: Collection[dict[str, Any]] = db[TICKETS]
        self.clock = clock
        self.wall = wall or SystemClock()
        self._ttl = False
        self._expired_at: float | None = None

    def ensure_indexes(self) -> None:
        """The lookup by message and the expiry; safe to run again."""
        self.tickets.create_index("message_id", name="message")
        seconds = int(RETENTION.total_seconds())
        try:
            self.tickets.create_index("opened_at", name="expiry", expireAfterSeconds=seconds)
        except OperationFailure as exc:
            log.info("index.ttl_unsupported", collection=TICKETS, detail=exc.details)
            self._expire()
        else:
            self._ttl = True

    def take(self, doc: Mapping[str, Any]) -> str | None:
        """The ticket for this claim of `doc`, or None when another worker holds it."""
        ticket = claim_ticket(doc)
        if not self._ttl and self._expired_at is not None:
            self._expire(every=EXPIRE_EVERY_SECONDS)
        try:
            self.tickets.insert_one(
                {
                    "_id": ticket,
                    "message_id": doc["_id"],
                    "claim_token": doc.get("claim_token"),
                    "opened_at": self.wall.now(),
                    "outcome": None,
                }
            )
        except DuplicateKeyError:
            return None
        return ticket

    def void(self, doc: Mapping[str, Any]) -> bool:
        """Lease recovery of a message marked in flight: take the ticket its mark names as never
        sent, so a worker that stalled before taking it can no longer send. False when the ticket
        was already taken, or the document does not say which it is: the request may have left."""
        ticket = doc.get("ticket")
        if not isinstance(ticket, str):
            return False
        try:
            self.tickets.insert_one(
                {
                    "_id": ticket,
                    "message_id": doc["_id"],
                    "claim_token": doc.get("claim_token"),
                    "opened_at": self.wall.now(),
                    "outcome": Outcome.NOT_SENT.value,
                    "voided": True,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    def taken_by_a_copy(self, doc: Mapping[str, Any]) -> bool:
        """When this claim's ticket is already taken: True if by a claim that has since been
        answered, or by a document with another _id of the same text (an ObjectId and its hex
        string). Either way `doc` is a copy of a document that was sent, not a second worker
        racing for the same claim, whose ticket would still be unanswered."""
        found = self.tickets.find_one({"_id": claim_ticket(doc)})
        if found is None:
            return False
        answered = found.get("outcome") in (Outcome.SENT.value, Outcome.IN_DOUBT.value)
        return found.get("message_id") != doc["_id"] or answered

    def settle(self, token: str, outcome: Outcome, provider_id: str | None = None) -> None:
        """Record what came of the ticket's request."""
        now = self.clock.now()
        fields = {"outcome": outcome.value, "provider_id": provider_id, "settled_at": now}
        self.tickets.update_one({"_id": token}, {"$set": fields})

    def verdict(self, doc: Mapping[str, Any]) -> Verdict:
        """Sent if any request was accepted; in doubt if any was never answered."""
        in_doubt = False
        for ticket in self.tickets.find({"message_id": doc["_id"]}):
            if ticket.get("outcome") == Outcome.SENT:
                return Verdict(provider_id=str(ticket.get("provider_id")))
            in_doubt = in_doubt or ticket.get("outcome") in (None, Outcome.IN_DOUBT)
        return Verdict(in_doubt=in_doubt)

    def in_doubt_spans(self, message_id: Any) -> list[tuple[datetime, datetime | None]]:
        """When each unanswered request of a message was opened and (if it was) settled: the
        times Flowroute may have accepted it, for reconciliation."""
        query = {"message_id": message_id, "outcome": {"$in": [None, Outcome.IN_DOUBT.value]}}
        return [
            (t["opened_at"], t.get("settled_at"))
            for t in self.tickets.find(query)
            if isinstance(t.get("opened_at"), datetime)
        ]

    def _expire(self, every: float = 0.0) -> None:
        """Delete the tickets older than RETENTION (what the TTL index does where there is one),
        unless that was done less than `every` seconds ago."""
        now = self.wall.monotonic()
        if self._expired_at is not None and now - self._expired_at < every:
            return
        self._expired_at = now
        self.tickets.delete_many({"opened_at": {"$lt": self.wall.now() - RETENTION}})
