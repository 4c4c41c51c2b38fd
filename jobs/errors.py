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


class NotConfirmedYet(OutboxError):
    """Flowroute has no record of an inbound text yet (records can lag a few seconds): the text
    is applied again later, and believed only once its record is found."""
