"""The messages the daemon makes itself (the replies to STOP, HELP and START, and the opt-in
code, prompt and welcome texts): one builder, so each is queued alike. Pure.

Such a message is an ordinary outbox document of the daemon's own user, queued at once; its
caller signs it with the daemon's key and seals it as made (jobs/rules/seal.py), since the
daemon sends only what it sealed and, without consent on record, only what its key signed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobs.model import State
from jobs.rules import segments

Doc = dict[str, Any]
USER = "sms-outbox"


def message(
    message_id: str,
    to: str,
    source: str,
    body: str,
    campaign: str,
    priority: int,
    now: datetime,
    *,
    reply_to: str | None = None,
) -> Doc:
    """One message the daemon makes, due now; its id makes a second insert of it collide."""
    text = segments.normalize_text(body)
    size = segments.measure(text)
    doc: Doc = {
        "_id": message_id, "kind": "message", "user": USER, "to": to, "from": source,
        "body": text, "campaign": campaign, "segments": size.segments,
        "encoding": size.encoding, "priority": priority, "due_at": now,
        "state": State.QUEUED.value, "attempts": 0, "rev": 1, "synced": False,
        "created_at": now, "updated_at": now,
    }  # fmt: skip
    if reply_to is not None:
        doc["reply_to"] = reply_to
    return doc
