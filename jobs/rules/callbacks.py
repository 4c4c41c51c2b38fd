"""Flowroute's callbacks (delivery receipts and inbound messages), read from either payload shape.

Pure functions: a callback body in, the fields the daemon keeps out, or an InputError saying
what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from jobs.errors import InputError
from jobs.model import MAX_BODY_CHARS
from jobs.rules import phone

DLR, INBOUND = "dlr", "inbound"
# An inbound callback without Flowroute's id is named by a hash of its content instead.
NO_ID_PREFIX = "sha256-"
# Sends get mdr2- ids; inbound messages have been seen with mdr1- ids too.
_MDR_ID = re.compile(r"mdr\d-[0-9A-Za-z-]{1,64}")
MAX_TEXT = 500
# Flowroute's callbacks nest four deep; anything much deeper is not one of them, and is refused
# before the parser recurses into it.
MAX_DEPTH = 16


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse(kind: str, raw: bytes) -> dict[str, Any]:
    """The fields of a `kind` callback (DLR or INBOUND) body, or InputError."""
    if nesting_depth(raw) > MAX_DEPTH:
        raise InputError(f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"malformed JSON: {str(exc)[:100]}") from None
    if not isinstance(document, dict):
        raise InputError("the body must be a JSON object")
    fields = receipt(document) if kind == DLR else inbound(document)
    for name, value in fields.items():
        # A lone surrogate (`"\\ud800"`) is valid JSON but no text: it cannot be stored.
        if isinstance(value, str) and not _encodable(value):
            raise InputError(f"'{name}' is not valid Unicode text")
    return fields


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _resource(document: dict[str, Any], expected_type: str) -> tuple[Any, dict[str, Any]]:
    """The id and attributes of a JSON:API resource, or of the flat form without `data`."""
    if "data" not in document:
        return document.get("id", document.get("message_id")), document
    data = document["data"]
    if not isinstance(data, dict):
        raise InputError("'data' must be an object")
    if data.get("type", expected_type) != expected_type:
        raise InputError(f"'data.type' must be {expected_type!r}")
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise InputError("'data.attributes' must be an object")
    return data.get("id"), attributes


def _message_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _MDR_ID.fullmatch(value):
        raise InputError(f"{what} must be a Flowroute message id (mdr2-...)")
    return value


def _text(value: Any, what: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise InputError(f"'{what}' must be text")
    if len(value) > limit:
        raise InputError(f"'{what}' is longer than {limit} characters")
    return value


def timestamp(value: Any) -> datetime | None:
    """Flowroute's ISO-8601 time (variable fractional digits) as aware UTC, or None."""
    if not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00").replace(" ", "T", 1)
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)", text)
    if match:  # fromisoformat before 3.11's widening wants 3 or 6 fractional digits
        head, fraction, zone = match.groups()
        text = head + ("." + (fraction + "000000")[:6] if fraction else "") + zone
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _code(value: Any) -> str | None:
    """`status_code` may be absent, null, an int or a string; kept as text."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        return str(value).strip()[:20] or None
    raise InputError("'status_code' must be a number or text")


def _level(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise InputError("'level' must be a small whole number")
    return value


def receipt(document: dict[str, Any]) -> dict[str, Any]:
    """A delivery receipt: the message id, level, carrier status, code, description and time."""
    resource_id, attributes = _resource(document, "delivery_receipt")
    status = _text(attributes.get("status"), "status", required=True, limit=100)
    assert status is not None
    return {
        "provider_id": _message_id(resource_id, "the receipt's id"),
        "level": _level(attributes.get("level")),
        "status": status.strip(),
        "status_code": _code(attributes.get("status_code")),
        "description": _text(attributes.get("status_code_description"), "description"),
        "timestamp": timestamp(attributes.get("timestamp")),
    }


def _number(value: Any, what: str) -> str:
    try:
        return phone.normalize(value)
    except InputError:
        raise InputError(f"'{what}' must be a North American number") from None


def inbound(document: dict[str, Any]) -> dict[str, Any]:
    """An inbound message: who texted which of our numbers, what and when."""
    resource_id, attributes = _resource(document, "message")
    direction = attributes.get("direction", "inbound")
    if direction != "inbound":
        raise InputError("'direction' must be 'inbound'")
    body = _text(attributes.get("body", ""), "body", limit=MAX_BODY_CHARS) or ""
    fields: dict[str, Any] = {
        "from": _number(attributes.get("from"), "from"),
        "to": _number(attributes.get("to"), "to"),
        "body": body,
        "timestamp": timestamp(attributes.get("timestamp")),
    }
    if resource_id is None:
        # The id is the key that makes a resent callback harmless; without one, the content is.
        digest = hashlib.sha256(
            repr((fields["from"], fields["to"], body, attributes.get("timestamp"))).encode()
        ).hexdigest()
        fields["inbound_id"] = f"{NO_ID_PREFIX}{digest[:32]}"
    else:
        fields["inbound_id"] = _message_id(resource_id, "the message id")
    return fields
