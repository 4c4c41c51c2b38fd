"""The daemon's opt-in texts as outbox documents: queued, signed with the daemon's key, on the
reply lane. Built like the replies to STOP and HELP (jobs/dispatch/inbound.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from jobs.keys import Signatures
from jobs.mongo.store import Doc
from jobs.ports import Sealer
from jobs.rules import made, optin, seal


class Outbox(Protocol):
    """Where the texts go (the MongoDB `OutboxStore` is one)."""

    @property
    def sealer(self) -> Sealer | None: ...

    def add_children(self, children: list[Doc]) -> list[Doc]: ...


def message(
    kind: optin.Kind,
    ref: str,
    to: str,
    source: str,
    body: str,
    now: datetime,
    signatures: Signatures | None,
) -> Doc:
    """One opt-in text, ready to insert; its id makes a second insert of it collide."""
    doc = made.message(
        optin.message_id(kind, ref, to), to, source, body, optin.campaign(kind, ref),
        optin.PRIORITY, now,
    )  # fmt: skip
    if signatures is not None:
        doc["signature"] = signatures.sign_child(doc)
    return doc


def queue(outbox: Outbox, doc: Doc) -> bool:
    """Insert one opt-in text, sealed as the daemon's own (it is queued already, and the
    daemon sends only what it sealed); False when it was there already (the same request
    again)."""
    if outbox.sealer is not None:
        doc = {**doc, "seal": outbox.sealer.seal(doc, seal.MADE)}
    return bool(outbox.add_children([doc]))
