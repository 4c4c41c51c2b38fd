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

VERSION = "sms-outbox-v2"
# v1 did not sign the document's _id, so a copy under a new _id passed; only broadcast
# messages still verify under it (their _id is bound to their signed campaign and number).
RETIRED_VERSION = "sms-outbox-v1"
SIGNED_FIELDS = (
    "_id", "user", "to", "from", "body", "key", "send_at", "priority", "audience", "campaign",
)  # fmt: skip
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


def signed_id(doc: Mapping[str, Any]) -> str | None:
    """The document's _id as it is signed: a string as it is, an ObjectId as its 24 hex digits;
    None when it has no _id of either kind."""
    value = doc.get("_id")
    if isinstance(value, str):
        return value
    # An ObjectId, known by its 12 bytes (only jobs.mongo imports bson).
    binary = getattr(value, "binary", None)
    return binary.hex() if isinstance(binary, bytes) and len(binary) == 12 else None


def canonical(doc: Mapping[str, Any], version: str = VERSION) -> bytes:
    """The bytes that are signed: a compact JSON array of the version and the signed fields, in
    order, a missing field as null, the _id as text, numbers in 11-digit form and dates in
    ISO-8601 UTC."""
    values: list[Any] = [version]
    for name in SIGNED_FIELDS:
        value = doc.get(name)
        if name == "_id":
            if version == RETIRED_VERSION:
                continue
            value = signed_id(doc)
        elif name in ("to", "from") and value is not None:
            value = _number(value)
        elif name == "priority" and value is None:
            value = 0  # absent means 0, as intake reads it
        values.append(_iso(value))
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8", errors="surrogatepass"
    )


def sign(key: str, doc: Mapping[str, Any], version: str = VERSION) -> str:
    """The signature of `doc` under `key` (hex), to be stored in its `signature` field."""
    return hmac.new(key.encode("utf-8"), canonical(doc, version), hashlib.sha256).hexdigest()


def check(
    key: str | None, doc: Mapping[str, Any], signer: str, *, retired_ok: bool = False
) -> Problem | None:
    """None when `doc` carries a valid signature by `signer`'s `key`, else the problem.
    `retired_ok` also accepts the retired form, which does not bind the _id."""
    if key is None:
        return Problem(Reason.SIGNATURE, f"no signing key is configured for {signer}")
    given = doc.get("signature")
    if not isinstance(given, str) or not given:
        return Problem(Reason.SIGNATURE, "the message is not signed")
    if signed_id(doc) is None:
        return Problem(Reason.SIGNATURE, "the document's _id must be an ObjectId or a string")
    # compare_digest refuses non-ASCII text with a TypeError; no such string is a hex digest.
    given = given.lower() if given.isascii() else ""
    if hmac.compare_digest(given, sign(key, doc)):
        return None
    if hmac.compare_digest(given, sign(key, {**doc, "_id": None})):
        detail = f"signed without its _id ({VERSION} signs it): set _id before signing"
        return Problem(Reason.SIGNATURE, detail)
    if hmac.compare_digest(given, sign(key, doc, RETIRED_VERSION)):
        if retired_ok:
            return None
        detail = f"signed in the retired {RETIRED_VERSION} form; sign the _id too ({VERSION})"
        return Problem(Reason.SIGNATURE, detail)
    return Problem(Reason.SIGNATURE, f"the signature does not match the key of {signer}")
