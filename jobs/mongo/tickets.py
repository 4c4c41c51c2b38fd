"""Send tickets: at most one request to Flowroute per claim, even on servers whose
find-and-modify is not atomic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from jobs.clock import Clock
from jobs.dispatch.ports import Outcome, Verdict
from jobs.mongo.connection import adapter

TICKETS = "send_tickets"


@adapter
class SendTickets:
    """A send guard: a ticket is inserted, under a unique id made of the message id and the
    revision its claim produced, before the request leaves, and settled with what came back.

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

    def take(self, doc: Mapping[str, Any]) -> str | None:
        """The ticket for this claim of `doc`, or None when another worker holds it."""
        ticket = f"{doc['_id']}:{doc['rev']}"
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
