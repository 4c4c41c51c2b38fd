"""The ports of the send cycle: the interfaces it depends on, with the contract each implementation
keeps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    """What came of one request to Flowroute, as a send guard records it."""

    SENT = "sent"
    NOT_SENT = "not_sent"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True)
class Verdict:
    """What a send guard knows about the requests made for one message."""

    provider_id: str | None = None  # set when a request was accepted: the message was sent
    in_doubt: bool = False  # a request may have reached Flowroute with no answer recorded


class SendGuard(Protocol):
    """At most one request to Flowroute per claim, and what lease recovery may conclude.

    `take` is called after the fenced in-flight mark and before the request leaves; it returns a
    token, or None when another worker already holds this claim's send (only possible on a
    server whose find-and-modify is not atomic). `settle` records the outcome of the request;
    `verdict` tells lease recovery what is known about a message whose worker died.
    """

    def ensure_indexes(self) -> None: ...

    def take(self, doc: Mapping[str, Any]) -> str | None: ...

    def settle(self, token: str, outcome: Outcome, provider_id: str | None = None) -> None: ...

    def verdict(self, doc: Mapping[str, Any]) -> Verdict: ...
