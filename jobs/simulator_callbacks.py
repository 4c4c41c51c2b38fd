"""What the simulated Flowroute posts back: delivery receipts and inbound messages."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

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
