"""Flowroute's message records (MDR): one message by id, or every message in a time window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from pydantic import SecretStr

from jobs.errors import RetryableError
from jobs.flowroute import CONNECT_TIMEOUT_SECONDS, CONTENT_TYPE, MESSAGES_PATH
from jobs.pacing import Pacer

PAGE_LIMIT = 200
MAX_PAGES = 500


class MessageRecords(Protocol):
    """Looks records up; every failure is a RetryableError (a lookup changes nothing)."""

    def get(self, provider_id: str) -> dict[str, Any]: ...

    def between(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]: ...


def iso(when: datetime) -> str:
    """The documented date-time form, YYYY-MM-DDTHH:mm:ss.SSZ, in UTC."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 10000:02d}Z"


class FlowrouteRecords:
    """Record lookups, paced by their own pacer so they never eat into the send rate."""

    def __init__(
        self,
        base_url: str,
        access_key: SecretStr,
        secret_key: SecretStr,
        timeout_seconds: float,
        pacer: Pacer,
        session: requests.Session | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + MESSAGES_PATH
        self._auth = (access_key, secret_key)
        self.timeout = (min(CONNECT_TIMEOUT_SECONDS, timeout_seconds), timeout_seconds)
        self.pacer = pacer
        self.session = session or requests.Session()
        self.lookups = 0

    def __repr__(self) -> str:
        return f"FlowrouteRecords(url={self.url!r})"

    def _get(self, url: str, params: dict[str, Any] | None = None) -> Any:
        # Credentials go to Flowroute's own host only, whatever a `next` link says.
        if urlsplit(url).netloc != urlsplit(self.url).netloc:
            raise RetryableError("lookup", "a page link points away from Flowroute")
        self.pacer.acquire()
        self.lookups += 1
        access, secret = self._auth
        try:
            response = self.session.get(
                url,
                params=params,
                headers={"Accept": CONTENT_TYPE},
                auth=(access.get_secret_value(), secret.get_secret_value()),
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise RetryableError("lookup", f"record lookup failed: {type(exc).__name__}") from None
        if response.status_code == 429:
            self.pacer.penalize()
        if response.status_code != 200:
            raise RetryableError(str(response.status_code), "record lookup refused")
        try:
            return response.json()
        except ValueError:
            raise RetryableError("lookup", "record lookup answered without JSON") from None

    def get(self, provider_id: str) -> dict[str, Any]:
        """The attributes of one message's record."""
        body = self._get(f"{self.url}/{provider_id}")
        data = body.get("data") if isinstance(body, dict) else None
        attributes = data.get("attributes") if isinstance(data, dict) else None
        if not isinstance(attributes, dict):
            raise RetryableError("lookup", "the record has no attributes")
        return attributes

    def between(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Every record from `start` to `end`, page after page ({"id", **attributes})."""
        params: dict[str, Any] | None = {
            "start_date": iso(start), "end_date": iso(end), "limit": PAGE_LIMIT, "offset": 0,
        }  # fmt: skip
        url: str | None = self.url
        for _ in range(MAX_PAGES):
            if url is None:
                return
            body = self._get(url, params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise RetryableError("lookup", "the record list has no data")
            for item in data:
                if isinstance(item, dict) and isinstance(item.get("attributes"), dict):
                    yield {"id": item.get("id"), **item["attributes"]}
            links = body.get("links")
            following = links.get("next") if isinstance(links, dict) else None
            url = urljoin(self.url, following) if isinstance(following, str) else None
            params = None
        raise RetryableError("lookup", f"more than {MAX_PAGES} pages of records")
