"""What the simulated Flowroute posts back: delivery receipts and inbound messages."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from jobs.simulator.records import SimMessage

JSON_API = "application/vnd.api+json"
POST_TIMEOUT_SECONDS = 5.0
LEVEL_1_STATUS = "smsc submit"
LEVEL_1_DESCRIPTION = "Message sent on to the carrier"


@dataclass(frozen=True)
class Receipt:
    """One delivery receipt as Flowroute would post it for a message."""

    message_id: str
    body: str
    level: int
    status: str
    status_code: Any
    description: str
    timestamp: datetime

    def attributes(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "level": self.level,
            "status": self.status,
            "status_code": self.status_code,
            "status_code_description": self.description,
            "timestamp": iso(self.timestamp),
        }


def iso(when: datetime) -> str:
    """Flowroute's timestamp form: ISO-8601 UTC with a Z."""
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def receipt_document(receipt: Receipt, base_url: str, *, flat: bool) -> dict[str, Any]:
    """The documented JSON:API receipt, or the flat form seen in the wild."""
    if flat:
        return {"id": receipt.message_id, **receipt.attributes()}
    return {
        "data": {
            "id": receipt.message_id,
            "type": "delivery_receipt",
            "attributes": receipt.attributes(),
            "links": {"related": f"{base_url}/v2.1/messages/{receipt.message_id}"},
        }
    }


def inbound_document(
    message_id: str, from_: str, to: str, body: str, when: datetime, *, flat: bool
) -> dict[str, Any]:
    """An inbound message as Flowroute posts it to the SMS callback URL."""
    attributes = {
        "to": to,
        "from": from_,
        "body": body,
        "direction": "inbound",
        "timestamp": iso(when),
        "is_mms": False,
        "message_encoding": 0,
        "message_type": "longcode",
        "amount_nanodollars": 0,
        "amount_display": "$0.0000",
    }
    if flat:
        return {"id": message_id, **attributes}
    return {"data": {"id": message_id, "type": "message", "attributes": attributes}}


def new_id() -> str:
    return f"mdr2-{uuid.uuid4().hex}"


def post(url: str, document: dict[str, Any], *, flat: bool) -> int:
    """POST one callback; the HTTP status, or 0 when nothing answered."""
    content_type = "application/json" if flat else JSON_API
    try:
        response = requests.post(
            url, json=document, headers={"Content-Type": content_type}, timeout=POST_TIMEOUT_SECONDS
        )
    except requests.RequestException:
        return 0
    return response.status_code


class Callbacks:
    """The simulator's side of callbacks: receipts for the messages it accepted, inbound texts."""

    sms_callback: str | None
    _lock: threading.Lock
    _messages: list[SimMessage]
    _inbound: list[SimMessage]
    _by_id: dict[str, SimMessage]
    _receipts: dict[str, list[dict[str, Any]]]

    @property
    def url(self) -> str:
        """The simulator's base URL (the server provides it)."""
        raise NotImplementedError

    def receipts_of(self, message_id: str) -> list[dict[str, Any]]:
        """The receipts posted for a message, newest first, as its record shows them."""
        with self._lock:
            return list(self._receipts.get(message_id, []))

    def post_receipts(
        self,
        message_ids: Iterable[str] | None = None,
        *,
        final_status: str = "delivered",
        final_code: Any = None,
        description: str = "Message delivered to the handset",
        duplicate: bool = False,
        reverse: bool = False,
        flat: bool = False,
        url: str | None = None,
    ) -> list[int]:
        """POST level 1 then level 2 receipts to each message's `dlr_callback` (or `url`).

        `reverse` posts level 2 first, `duplicate` posts each receipt twice. The receipts are
        kept for the message's record even when the post fails. Returns each post's status.
        """
        with self._lock:
            wanted = None if message_ids is None else set(message_ids)
            chosen = [m for m in self._messages if wanted is None or m.id in wanted]
        statuses = []
        for message in chosen:
            target = url or message.dlr_callback
            now = datetime.now(UTC)
            level_1 = Receipt(
                message.id, message.body, 1, LEVEL_1_STATUS, None,
                LEVEL_1_DESCRIPTION, now,
            )  # fmt: skip
            level_2 = Receipt(
                message.id, message.body, 2, final_status, final_code, description, now
            )
            order = [level_2, level_1] if reverse else [level_1, level_2]
            for receipt in order:
                with self._lock:
                    self._receipts.setdefault(message.id, []).insert(0, receipt.attributes())
                if target is None:
                    continue
                document = receipt_document(receipt, self.url, flat=flat)
                for _ in range(2 if duplicate else 1):
                    statuses.append(post(target, document, flat=flat))
        return statuses

    def send_inbound(
        self,
        from_: str,
        to: str,
        body: str,
        *,
        url: str | None = None,
        flat: bool = False,
        message_id: str | None = None,
    ) -> tuple[int, str]:
        """Record an inbound message and POST it to the SMS callback (or `url`); returns the
        post's status and the message id. Posting again with the same id is a resend."""
        target = url or self.sms_callback
        if target is None:
            raise ValueError("no SMS callback URL is configured")
        message = self.record_inbound(from_, to, body, message_id=message_id)
        document = inbound_document(
            message.id, from_.lstrip("+"), to.lstrip("+"), body, message.timestamp, flat=flat
        )
        return post(target, document, flat=flat), message.id

    def record_inbound(
        self, from_: str, to: str, body: str, *, message_id: str | None = None
    ) -> SimMessage:
        """Record an inbound message without posting it: `GET /v2.1/messages/{id}` finds it, as
        Flowroute's records do (an id already recorded keeps its first record)."""
        message = SimMessage(
            id=message_id or new_id(), to=to.lstrip("+"), from_=from_.lstrip("+"),
            body=body, dlr_callback=None, timestamp=datetime.now(UTC),
            content_type="application/json", direction="inbound",
        )  # fmt: skip
        with self._lock:
            if message.id in self._by_id:
                return self._by_id[message.id]
            self._inbound.append(message)
            self._by_id[message.id] = message
        return message
