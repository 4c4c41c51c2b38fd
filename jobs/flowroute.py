"""The Flowroute Messaging API v2.1 client: one SMS per call, errors sorted by what is safe next."""

from __future__ import annotations

import re
from typing import Any, Protocol

import requests
from pydantic import SecretStr
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from jobs.errors import (
    AccountError,
    NoProviderIdError,
    OptedOutError,
    PermanentError,
    ProviderError,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
)

MESSAGES_PATH = "/v2.1/messages"
CONTENT_TYPE = "application/vnd.api+json"
OPTED_OUT_CODE = "1110"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT_SECONDS = 5.0
# A 403 is the account's fault, not the message's, when Flowroute's title or detail names the
# account, its credentials or the sending number (the documented case: a `from` the account
# does not own). Any other 403 fails that one message.
ACCOUNT_403 = re.compile(
    r"\baccount\b|\bfrom\b|\bsend(?:er|ing)\b|\bsource\b|\bcredential|\bapi key|\bunauthori[sz]ed",
    re.IGNORECASE,
)


class SmsProvider(Protocol):
    """Sends one SMS and returns the provider's message id, or raises a ProviderError."""

    def send(self, to: str, source: str, body: str) -> str: ...


class FlowrouteClient:
    """Sends through Flowroute with HTTP Basic auth and a JSON:API body.

    There is no idempotency key in the API, so the client never retries by itself: whether a
    failed request may be sent again is decided by the caller from the error's class.
    """

    def __init__(
        self,
        base_url: str,
        access_key: SecretStr,
        secret_key: SecretStr,
        timeout_seconds: float,
        dlr_callback: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + MESSAGES_PATH
        self._auth = (access_key, secret_key)
        self.timeout = (min(CONNECT_TIMEOUT_SECONDS, timeout_seconds), timeout_seconds)
        self.dlr_callback = dlr_callback
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"FlowrouteClient(url={self.url!r})"

    def send(self, to: str, source: str, body: str) -> str:
        attributes: dict[str, Any] = {"to": to, "from": source, "body": body}
        if self.dlr_callback:
            attributes["dlr_callback"] = self.dlr_callback
        payload: dict[str, Any] = {"data": {"type": "message", "attributes": attributes}}
        access, secret = self._auth
        try:
            response = self.session.post(
                self.url,
                json=payload,
                headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
                auth=(access.get_secret_value(), secret.get_secret_value()),
                timeout=self.timeout,
            )
        except requests.ConnectTimeout:
            raise RetryableError("connect_timeout", "could not connect to Flowroute") from None
        except requests.Timeout:
            raise UnknownOutcomeError(
                "timeout", f"no answer within {self.timeout[1]} s; the message may have been sent"
            ) from None
        except requests.ConnectionError as exc:
            raise _connection_error(exc) from None
        return _parse(response)

    def close(self) -> None:
        self.session.close()


def _connection_error(exc: requests.ConnectionError) -> ProviderError:
    """Refused or unresolvable connections never carried the request; a dropped one might have."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, NewConnectionError | ConnectTimeoutError):
            return RetryableError("connect_error", "could not connect to Flowroute")
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else cause.__context__
    return UnknownOutcomeError(
        "connection_lost", "the connection broke after the request left; it may have been sent"
    )


def _parse(response: requests.Response) -> str:
    """The `mdr2-` id of an accepted message, or the ProviderError that says what went wrong."""
    body = _json(response)
    if response.status_code in (200, 201, 202):
        data = body.get("data") if isinstance(body, dict) else None
        message_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(message_id, str) and message_id:
            return message_id
        raise NoProviderIdError(
            str(response.status_code), "Flowroute accepted the message without a message id"
        )
    status = response.status_code
    detail = _error_detail(body) or response.reason or "no detail"
    code = str(status)
    if status == 401 or (status == 403 and is_account_refusal(detail)):
        raise AccountError(code, detail, status)
    if status == 400 and _has_code(body, OPTED_OUT_CODE):
        raise OptedOutError(OPTED_OUT_CODE, detail, status)
    if status == 429:
        raise ThrottledError(code, detail, status)
    if status in RETRYABLE_STATUSES or status >= 500:
        raise RetryableError(code, detail, status)
    raise PermanentError(code, detail, status)


def is_account_refusal(detail: Any) -> bool:
    """True when a 403's text says the account or the sending number is not allowed."""
    return ACCOUNT_403.search(str(detail)) is not None


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _errors(body: Any) -> list[dict[str, Any]]:
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_detail(body: Any) -> Any:
    """Flowroute's `detail` (a string or a nested object) of the first error, with its title."""
    for error in _errors(body):
        detail, title = error.get("detail"), error.get("title")
        if detail is None:
            return title
        if title and isinstance(detail, str):
            return f"{title}: {detail}"
        return detail
    return None


def _has_code(body: Any, code: str) -> bool:
    """True when any error carries `code` as its code, id or inside its detail (not documented)."""
    for error in _errors(body):
        for value in (error.get("code"), error.get("id")):
            if value is not None and str(value) == code:
                return True
        if code in str(error.get("detail", "")):
            return True
    return False
