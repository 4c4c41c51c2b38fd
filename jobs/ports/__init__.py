"""The ports: the interfaces the work depends on, with the contract each implementation keeps.

They sit one floor below both sides: `jobs.dispatch` depends on them and `jobs.mongo` and
`jobs.doubles` implement them, so the send cycle and the adapters never import each other.
"""

from jobs.ports.directory import Consents, Directory
from jobs.ports.followup import (
    APPLIED,
    DUPLICATE,
    KEPT,
    UNKNOWN_ID,
    Delivery,
    Handled,
    InboundLog,
    Inbox,
    KeywordOptIn,
)
from jobs.ports.outbox import AccountHolds, Doc, Outbox, Sealer
from jobs.ports.sending import (
    CLAIM_ENDED,
    TICKET_TAKEN,
    NoGuard,
    Outcome,
    SendGuard,
    SendRefused,
    SendTicket,
    SpentIds,
    Verdict,
    claim_ticket,
)

__all__ = [
    "APPLIED",
    "CLAIM_ENDED",
    "DUPLICATE",
    "KEPT",
    "TICKET_TAKEN",
    "UNKNOWN_ID",
    "AccountHolds",
    "Consents",
    "Delivery",
    "Directory",
    "Doc",
    "Handled",
    "InboundLog",
    "Inbox",
    "KeywordOptIn",
    "NoGuard",
    "Outbox",
    "Outcome",
    "Sealer",
    "SendGuard",
    "SendRefused",
    "SendTicket",
    "SpentIds",
    "Verdict",
    "claim_ticket",
]
