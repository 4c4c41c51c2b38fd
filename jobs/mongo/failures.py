"""Database failures in one line: which setting is wrong, or that the server cannot be reached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    InvalidName,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from jobs.errors import StoreError, StoreUnavailable

AUTHENTICATION_FAILED, UNAUTHORIZED, INVALID_NAMESPACE = 18, 13, 73


@dataclass(frozen=True)
class Failure:
    """One line for the person running the command; `config` says the settings are at fault
    (exit 78) rather than the server being unavailable (exit 69)."""

    line: str
    config: bool


def explain(exc: BaseException, secrets: Sequence[str] = ()) -> Failure | None:
    """What a pymongo error (or the ValueError a malformed URI raises) means for the settings;
    None for anything else. Secrets are removed from the server's words."""

    if isinstance(exc, StoreError) and exc.__cause__ is not None:
        exc = exc.__cause__  # the project's errors keep pymongo's as their cause
    elif isinstance(exc, StoreUnavailable):
        return Failure(f"database unavailable: {exc}", False)
    elif isinstance(exc, StoreError):
        return Failure(f"the database refused an operation: {exc}", False)

    def clean(text: object) -> str:
        words = " ".join(str(text).split())
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            words = words.replace(secret, "***")
        return words

    if isinstance(exc, InvalidName):
        return Failure(f"setting mongodb.database: {clean(exc)}", True)
    if isinstance(exc, ConfigurationError) or (
        isinstance(exc, ValueError) and not isinstance(exc, PyMongoError)
    ):
        return Failure(f"setting mongodb.uri is not a usable MongoDB URI: {clean(exc)}", True)
    if isinstance(exc, ServerSelectionTimeoutError):
        return Failure(
            "database unavailable: no server at mongodb.uri answered within"
            " mongodb.timeout_seconds",
            False,
        )
    if isinstance(exc, ConnectionFailure):
        return Failure(f"database unavailable: {type(exc).__name__}: {clean(exc)}", False)
    if isinstance(exc, OperationFailure):
        why = clean((exc.details or {}).get("errmsg") or exc)
        if exc.code == AUTHENTICATION_FAILED:
            return Failure(f"setting mongodb.uri: the server refused its credentials ({why})", True)
        if exc.code == UNAUTHORIZED:
            return Failure(f"setting mongodb.uri: its user may not do this ({why})", True)
        if exc.code == INVALID_NAMESPACE:
            return Failure(f"setting mongodb.database: the server refused the name ({why})", True)
        return Failure(f"the database refused an operation (code {exc.code}): {why}", False)
    if isinstance(exc, PyMongoError):
        return Failure(f"database error: {type(exc).__name__}: {clean(exc)}", False)
    return None
