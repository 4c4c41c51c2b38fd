"""The vocabulary of messages: states, reason codes, problems and the fields a claim settles."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    """Where a message is; the values are what `message_status.state` holds."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    # Only a broadcast request ends here: it has become one message per recipient.
    EXPANDED = "expanded"
    # An operator stopped it before it was sent (`sms-outbox cancel`).
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why a message was rejected, failed or left unknown; stored as `error.code`."""

    INVALID_DOCUMENT = "invalid_document"
    INVALID_NUMBER = "invalid_number"
    EMPTY_BODY = "empty_body"
    BODY_TOO_LONG = "body_too_long"
    DUPLICATE_KEY = "duplicate_key"
    SIGNATURE = "signature"
    NOT_AUTHORIZED = "not_authorized"
    SOURCE_NOT_GRANTED = "source_not_granted"
    NOT_VERIFIED = "not_verified"
    OPTED_OUT = "opted_out"
    NO_RECIPIENTS = "no_recipients"
    QUIET_HOURS = "quiet_hours"
    NO_ALLOWED_HOURS = "no_allowed_hours"
    MAX_ATTEMPTS = "max_attempts"
    LEASE_EXPIRED = "lease_expired"
    TIMEOUT = "timeout"
    PROVIDER = "provider"
    CANCELLED = "cancelled"
    CARRIER = "carrier"
    RECONCILED = "reconciled"
    REPLAY = "replay"
    ACCOUNT_HELD = "account_held"
    NO_PROVIDER_ID = "no_provider_id"
    NOT_DUE = "not_due"


BROADCAST_AUDIENCE = "verified"
MAX_BODY_CHARS = 1600
DEFAULT_MAX_SEGMENTS = 10
# The fields of an outbox document that its public status (`message_status`) copies.
STATUS_FIELDS = (
    "state", "kind", "to", "from", "user", "campaign", "key", "attempts", "provider_id",
    "error", "recipients", "segments", "encoding", "created_at", "updated_at", "sent_at", "rev",
    "due_at", "cancelled", "history",
    "delivered_at", "final_at", "receipts", "reconciliation", "reply_to",
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """A reason code and a sentence for the person reading the status."""

    code: Reason
    detail: str
    provider_code: str | None = None  # Flowroute's HTTP status or error code, when it answered

    def as_error(self) -> dict[str, str]:
        error = {"code": str(self.code), "detail": self.detail}
        if self.provider_code is not None:
            error["provider_code"] = self.provider_code
        return error


# What a claim adds to an outbox document; every settlement of the claim removes them.
CLAIM_FIELDS = ("claim_token", "lease_until", "in_flight")
