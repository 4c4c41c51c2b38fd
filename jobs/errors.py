"""The error hierarchy of sms-outbox: configuration, input, database and provider errors."""

from __future__ import annotations

from typing import Any


class OutboxError(Exception):
    """Base of every error sms-outbox raises on purpose."""


class ConfigError(OutboxError):
    """A setting is missing or invalid; the message names the setting."""


class InputError(OutboxError):
    """Something a user or producer supplied is not acceptable; the message says why.

    `reason` is the code a rejected message records (one of `jobs.model.Reason`'s values).
    """

    def __init__(self, message: str, reason: str = "invalid_document") -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(OutboxError):
    """The database refused or failed an operation.

    `code` is the server's error code when it gave one; `details` is its explanation.
    """

    def __init__(self, message: str, code: int | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class StoreUnavailable(StoreError):
    """The database cannot be reached (connection lost, no server selected in time); retry later."""


class StoreRefused(StoreError):
    """The server answered but refused the operation (a permission, a limit, a constraint)."""


# Refusals that say nothing about the document written: permissions, elections, timeouts, write
# conflicts, duplicates. Any other refusal may be the document's own doing (a counter at its
# maximum, a field of the wrong type, a size past the limit).
REFUSAL_CHARS = 300
NOT_THE_DOCUMENT = frozenset(
    {6, 7, 13, 18, 50, 89, 91, 112, 189, 251, 262, 9001, 10107, 11000, 11600, 11602, 13435, 13436}
)


def document_fault(exc: BaseException) -> bool:
    """Whether `exc` is a refusal the written document itself may have caused: such a document
    is set aside and the step goes on; any other error stops the step."""
    if not isinstance(exc, StoreRefused) or isinstance(exc, DuplicateKey):
        return False
    return isinstance(exc.code, int) and exc.code not in NOT_THE_DOCUMENT


def refusal(exc: StoreError) -> str:
    """The server's own words for a refusal, short enough to keep as a rejection's reason."""
    words = exc.details.get("errmsg") if isinstance(exc.details, dict) else None
    text = " ".join(str(words or exc).split())
    return f"the server refused it (code {exc.code}): {text}"[:REFUSAL_CHARS]


class DuplicateKey(StoreRefused):
    """A unique index refused the document: its idempotency key is already in the outbox."""


class ProviderError(OutboxError):
    """Flowroute did not accept a message.

    `code` is a short machine-readable reason (an HTTP status or Flowroute error code as text,
    or a word such as ``timeout``); `detail` is Flowroute's explanation, never containing secrets.
    """

    def __init__(self, code: str, detail: Any = None, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.status = status


class RetryableError(ProviderError):
    """The request never took effect (5xx, connection refused); sending again is safe."""


class ThrottledError(RetryableError):
    """Flowroute answered 429: the per-second limit was exceeded."""


class PermanentError(ProviderError):
    """Flowroute refused the message for good (4xx other than 429)."""


class OptedOutError(PermanentError):
    """Flowroute refused with error 1110: the recipient texted STOP to the sending number."""


class UnknownOutcomeError(ProviderError):
    """The request may have reached Flowroute but no answer came back; resending could double it."""


class NoProviderIdError(UnknownOutcomeError):
    """Flowroute accepted the request (2xx) without a usable message id: it may have been sent."""


class AccountError(ProviderError):
    """Flowroute refused the account, not the message: bad credentials (401), or a 403 that names
    the account or the sending number. Sending stops and the message waits."""
