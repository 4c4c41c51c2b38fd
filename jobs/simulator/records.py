"""The Flowroute v2.1 documents the simulator reads and writes: send bodies, MDR records, errors."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jobs.rules.segments import ASCII, measure

MESSAGES_PATH = "/v2.1/messages"
JSON_API = "application/vnd.api+json"
OPTED_OUT_CODE = 1110
DEFAULT_PAGE_LIMIT = 250
_NUMBER = re.compile(r"\+?(1[2-9]\d\d[2-9]\d{6})")
_NANODOLLARS_PER_SEGMENT = 4_000_000
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

Answer = tuple[int, dict[str, Any], float]
# The status of an "answer" that is no answer: the connection is closed instead.
DROP = 0


@dataclass(frozen=True)
class SimMessage:
    """A message the simulator accepted with 202, as Flowroute would have recorded it."""

    id: str
    to: str
    from_: str
    body: str
    dlr_callback: str | None
    timestamp: datetime
    content_type: str
    direction: str = "outbound"


class Refusal(Exception):
    """An error answer: HTTP status, detail and, for some refusals, a Flowroute error code."""

    def __init__(self, status: int, detail: str, code: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code

    def answer(self, delay: float = 0.0) -> Answer:
        """The JSON:API error document for this refusal, with a fresh error id."""
        error: dict[str, Any] = {"id": str(uuid.uuid4()), "status": self.status}
        error["title"] = TITLES.get(self.status, "Error")
        error["detail"] = self.detail
        if self.code is not None:
            error["code"] = self.code
        return self.status, {"errors": [error]}, delay


def _number(attributes: dict[str, Any], field: str) -> str:
    value = attributes.get(field)
    match = _NUMBER.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Refusal(422, f"'{field}' must be an 11-digit North American number (1NPANXXXXXX)")
    return match.group(1)


def parse_send(raw: bytes) -> tuple[str, str, str, str | None]:
    """Read to, from (without '+'), body and dlr_callback from a JSON:API or a flat send body."""
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise Refusal(400, f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Refusal(400, "the request body must be a JSON object")
    attributes: Any = document
    if "data" in document:
        data = document["data"]
        attributes = data.get("attributes") if isinstance(data, dict) else None
        if not isinstance(attributes, dict) or data.get("type", "message") != "message":
            raise Refusal(422, "'data' must be a message resource with 'attributes'")
    to, from_ = _number(attributes, "to"), _number(attributes, "from")
    body = attributes.get("body")
    if not isinstance(body, str) or not body:
        raise Refusal(422, "'body' must be a non-empty string")
    dlr_callback = attributes.get("dlr_callback")
    if dlr_callback is not None and not isinstance(dlr_callback, str):
        raise Refusal(422, "'dlr_callback' must be a URL string")
    return to, from_, body, dlr_callback


def mdr_record(message: SimMessage, receipts: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The MDR2 resource Flowroute returns for a message, billed per segment; `receipts` are
    its delivery receipts' attributes, newest first, and the newest gives the record's status."""
    size = measure(message.body)
    nanodollars = size.segments * _NANODOLLARS_PER_SEGMENT
    attributes = {
        "to": message.to,
        "from": message.from_,
        "body": message.body,
        "direction": message.direction,
        "status": receipts[0]["status"] if receipts else "delivered",
        "timestamp": message.timestamp.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "is_mms": False,
        "message_encoding": 0 if size.encoding == ASCII else 8,
        "message_type": "longcode",
        "amount_nanodollars": nanodollars,
        "amount_display": f"${nanodollars / 1e9:.4f}",
        "delivery_receipts": list(receipts),
    }
    return {"id": message.id, "type": "message", "attributes": attributes}


def parse_date(value: str, *, end: bool) -> datetime:
    """Parse YYYY-MM-DD or an ISO date-time as UTC; a bare end date covers that whole day."""
    try:
        # A '+' left unencoded in a query string arrives as a space.
        when = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        detail = f"invalid date {value!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:mm:ss.SSZ"
        raise Refusal(400, detail) from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if end and "T" not in value:
        when += timedelta(days=1, microseconds=-1)
    return when


def page_integer(params: dict[str, str], name: str, default: int, minimum: int) -> int:
    """A non-negative paging parameter (limit, offset), or 400."""
    try:
        value = int(params.get(name, default))
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise Refusal(400, f"'{name}' must be an integer of at least {minimum}")
    return value


class Faults:
    """Random misbehaviour of sends, drawn per request."""

    def __init__(
        self,
        lose_answers: float = 0.0,
        drop_before: float = 0.0,
        drop_after: float = 0.0,
        lost_answer_seconds: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.rates = (
            ("lose_answer", lose_answers), ("drop_before", drop_before), ("drop_after", drop_after)
        )  # fmt: skip
        self.lost_answer_seconds = lost_answer_seconds
        self.rng = rng or random.Random()

    def draw(self) -> str | None:
        roll = self.rng.random()
        for name, rate in self.rates:
            if roll < rate:
                return name
            roll -= rate
        return None
