"""Message signatures: HMAC-SHA256 over a canonical form, so only key holders get texts sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobs.clock import as_utc
from jobs.errors import InputError
from jobs.model import Problem, Reason
from jobs.rules import phone

VERSION = "sms-outbox-v1"
SIGNED_FIELDS = ("user", "to", "from", "body", "key", "send_at", "priority", "audience", "campaign")
KEY_BYTES = 32


def new_key() -> str:
    """A fresh signing key, as 64 hex digits."""
    return secrets.token_hex(KEY_BYTES)


def _number(value: Any) -> Any:
    try:
        return phone.normalize(value)
    except InputError:
        return value


def _iso(value: Any) -> Any:
    """A date as JavaScript's Date.toISOString() writes it: milliseconds and a Z."""
    if not isinstance(value, datetime):
        return value
    utc = as_utc(value)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def canonical(doc: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: a compact JSON array of the version and the signed fields, in
    order, a missing field as null, numbers in 11-digit form and dates in ISO-8601 UTC."""
    values: list[Any] = [VERSION]
    for name in SIGNED_FIELDS:
        value = doc.get(name)
        if name in ("to", "from") and value is not None:
            value = _number(value)
        elif name == "priority" and value is None:
            value = 0  # absent means 0, as intake reads it
        values.append(_iso(value))
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8", errors="surrogatepass"
    )


def sign(key: str, doc: Mapping[str, Any]) -> str:
    """The signature of `doc` under `key` (hex), to be stored in its `signature` field."""
    return hmac.new(key.encode("utf-8"), canonical(doc), hashlib.sha256).hexdigest()


def check(key: str | None, doc: Mapping[str, Any], signer: str) -> Problem | None:
    """None when `doc` carries a valid signature by `signer`'s `key`, else the problem."""
    if key is None:
        return Problem(Reason.SIGNATURE, f"no signing key is configured for {signer}")
    given = doc.get("signature")
    if not isinstance(given, str) or not given:
        return Problem(Reason.SIGNATURE, "the message is not signed")
    # compare_digest refuses non-ASCII text with a TypeError; no such string is a hex digest.
    if not given.isascii() or not hmac.compare_digest(given.lower(), sign(key, doc)):
        return Problem(Reason.SIGNATURE, f"the signature does not match {signer}'s key")
    return None
