"""Replay rules: what ties a signed document to a single send, decided from its fields and time.

A signature covers the document's `_id` (see `jobs.signing`), so a copy under another id does
not verify; a broadcast's message must carry the id its signed campaign and number give it; the
daemon records each signed id it spends (`jobs.mongo.spent`), so a copy re-inserted under the
same id after the original was sent is refused; and a message never leaves before its signed
`send_at`, whatever its `due_at` says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from jobs.clock import as_utc
from jobs.errors import InputError
from jobs.model import STATUS_FIELDS, Problem, Reason
from jobs.rules import phone
from jobs.rules.intake import PRODUCER_FIELDS, Admission

# Fields only the daemon writes. A producer's document that carries them has them removed at
# intake (they would otherwise steer the daemon: `fanout_cursor` skipped recipients).
DAEMON_FIELDS = frozenset(
    {
        "due_at", "attempts", "rev", "claim_token", "lease_until", "in_flight", "ticket",
        "last_claim_token", "fanout_after", "fanout_cursor", "fanout_seal", "recipients",
        "provider_id", "sent_at", "error", "synced", "kind", "segments", "encoding", "created_at",
        "updated_at", "seal", "priority_requested",
    }
    # Every other field of the public status is the daemon's too (`cancelled`, `history`,
    # `receipts`, ...): a producer's copy of one must never reach `message_status`.
    | (frozenset(STATUS_FIELDS) - PRODUCER_FIELDS - {"state", "campaign"})
)  # fmt: skip
SEAL_VERSION = "sms-outbox-fanout-v1"


def daemon_fields(doc: Mapping[str, Any]) -> list[str]:
    """The daemon-owned fields a producer's document carries, to be removed at intake."""
    return sorted(DAEMON_FIELDS & doc.keys())


def producer_problem(doc: Mapping[str, Any]) -> Problem | None:
    """A producer's document must not pose as one of a broadcast's messages."""
    if doc.get("campaign") is not None:
        detail = "campaign is set by the daemon on a broadcast's messages, never by a producer"
        return Problem(Reason.INVALID_DOCUMENT, detail)
    if made_id(doc.get("_id")):
        detail = "ids of the form '<campaign>:<number>' belong to the daemon's own messages"
        return Problem(Reason.INVALID_DOCUMENT, detail)
    return None


def made_id(value: Any) -> bool:
    """Whether an id has the shape of one the daemon gives the messages it makes: a broadcast's
    message `<campaign>:<number>` or a reply `reply:...`."""
    if not isinstance(value, str):
        return False
    number = value.rpartition(":")[2]
    return value.startswith("reply:") or (
        ":" in value and len(number) == 11 and number.isascii() and number.isdigit()
    )


def child_problem(doc: Mapping[str, Any]) -> Problem | None:
    """A broadcast's message must have the id `<campaign>:<number>` of its signed fields."""
    campaign = doc.get("campaign")
    if campaign is None:
        return None
    doc_id = doc.get("_id")
    detail = f"a message of campaign {campaign!r} must have the id '{campaign}:<its number>'"
    if not isinstance(campaign, str) or not isinstance(doc_id, str):
        return Problem(Reason.REPLAY, detail)
    prefix, _, number = doc_id.rpartition(":")
    try:
        same = phone.normalize(number) == phone.normalize(doc.get("to"))
    except InputError:
        same = False
    if prefix != campaign or not same:
        return Problem(Reason.REPLAY, detail)
    return None


def not_before(doc: Mapping[str, Any], now: datetime) -> datetime | None:
    """The signed `send_at` when it is still ahead: the message waits for it, whatever due time
    someone wrote."""
    send_at = doc.get("send_at")
    if not isinstance(send_at, datetime):
        return None
    try:
        when = as_utc(send_at)
    except OverflowError:
        return None
    return when if when > now else None


def early_problem(when: datetime) -> Problem:
    """Why a message claimed before its signed `send_at` went back to the queue."""
    return Problem(Reason.NOT_DUE, f"its due time was moved before its signed send_at {when}")


def replay_problem(spent_id: str) -> Problem:
    """Why a copy of a document whose signed id was already spent is refused."""
    detail = f"id {spent_id} was already spent on a send: this document is a copy"
    return Problem(Reason.REPLAY, detail)


def seal(key: str, campaign: str, after: str, total: int) -> str:
    """A daemon-keyed seal of a fan-out's saved progress, so nobody else can make it skip."""
    values = [SEAL_VERSION, campaign, after, total]
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hmac.new(key.encode("utf-8"), text, hashlib.sha256).hexdigest()


def sealed(key: str, campaign: str, after: Any, total: Any, given: Any) -> bool:
    """True when saved progress carries the daemon's seal."""
    if not isinstance(after, str) or isinstance(total, bool) or not isinstance(total, int):
        return False
    if not isinstance(given, str) or not given.isascii():
        return False
    return hmac.compare_digest(given, seal(key, campaign, after, total))


def guard(doc: Mapping[str, Any], admission: Admission) -> Admission:
    """Intake's admission of a producer's document, refusing a posed broadcast message and
    naming the daemon-owned fields it carries, to be removed."""
    problem = producer_problem(doc)
    if problem is not None and admission.problem is None:
        admission = Admission(problem=problem, broadcast=admission.broadcast)
    return replace(admission, strip=tuple(daemon_fields(doc)))
