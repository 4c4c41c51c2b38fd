"""Send tickets: at most one request to Flowroute per claim, even on servers whose
find-and-modify is not atomic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from jobs.clock import Clock

TICKETS = "send_tickets"
SENT, NOT_SENT, IN_DOUBT = "sent", "not_sent", "in_doubt"


@dataclass(frozen=True)
class Verdict:
    """What the tickets of one message say about the requests made for it."""

    provider_id: str | None = None  # set when a request was accepted: the message was sent
    in_doubt: bool = False  # a request may have reached Flowroute with no answer recorded


def ticket_id(doc: dict[str, Any]) -> str:
    """The ticket of the claim `doc` was returned by: its id and the revision the claim made."""
    return f"{doc['_id']}:{doc['rev']}"


class SendTickets:
    """A ticket is inserted, under a unique id made of the message id and the revision its claim
    produced, before the request leaves, and settled with what came back.

    On MongoDB a claim is atomic and the ticket only records. On a server that answers
    find-and-modify with a read and a separate write (FerretDB 1.x), two workers can both
    believe they hold the same claim; both then hold the same revision, only one ticket insert
    succeeds, and only its holder sends. The tickets also tell lease recovery what happened.
    """

    def __init__(self, db: Database[dict[str, Any]], clock: Clock) -> None:
        self.tickets: Collection[dict[str, Any]] = db[TICKETS]
        self.clock = clock

    def ensure_indexes(self) -> None:
        self.tickets.create_index("message_id", name="message")

    def take(self, doc: dict[str, Any]) -> str | None:
        """The ticket for this claim of `doc`, or None when another worker holds it."""
        ticket = ticket_id(doc)
        try:
            self.tickets.insert_one(
                {
                    "_id": ticket,
                    "message_id": doc["_id"],
                    "claim_token": doc.get("claim_token"),
                    "opened_at": self.clock.now(),
                    "outcome": None,
                }
            )
        except DuplicateKeyError:
            return None
        return ticket

    def taken_by_a_copy(self, doc: dict[str, Any]) -> bool:
        """When this claim's ticket is already taken: True if by a claim that has since been
        answered, or by a document with another _id of the same text (an ObjectId and its hex
        string). Either way `doc` is a copy of a document that was sent, not a second worker
        racing for the same claim, whose ticket would still be unanswered."""
        found = self.tickets.find_one({"_id": ticket_id(doc)})
        if found is None:
            return False
        return found.get("message_id") != doc["_id"] or found.get("outcome") in (SENT, IN_DOUBT)

    def void(self, doc: dict[str, Any]) -> bool:
        """Lease recovery of a message marked in flight: take its claim's ticket as never sent,
        so a worker that stalled before taking it can no longer send. False when the ticket was
        already taken, or the document does not say which it is: the request may have left."""
        ticket = doc.get("ticket")
        if not isinstance(ticket, str):
            return False
        try:
            self.tickets.insert_one(
                {
                    "_id": ticket,
                    "message_id": doc["_id"],
                    "claim_token": doc.get("claim_token"),
                    "opened_at": self.clock.now(),
                    "outcome": NOT_SENT,
                    "voided": True,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    def settle(self, ticket: str, outcome: str, provider_id: str | None = None) -> None:
        """Record what came of the ticket's request."""
        fields = {"outcome": outcome, "provider_id": provider_id, "settled_at": self.clock.now()}
        self.tickets.update_one({"_id": ticket}, {"$set": fields})

    def outcome(self, ticket: Any) -> str | None:
        """What came of a ticket's request; None while unanswered or when there is no such
        ticket."""
        found = self.tickets.find_one({"_id": ticket}) if isinstance(ticket, str) else None
        value = found.get("outcome") if found is not None else None
        return value if isinstance(value, str) else None

    def verdict(self, message_id: Any) -> Verdict:
        """Sent if any request was accepted; in doubt if any was never answered."""
        in_doubt = False
        for ticket in self.tickets.find({"message_id": message_id}):
            if ticket.get("outcome") == SENT:
                return Verdict(provider_id=str(ticket.get("provider_id")))
            in_doubt = in_doubt or ticket.get("outcome") in (None, IN_DOUBT)
        return Verdict(in_doubt=in_doubt)
