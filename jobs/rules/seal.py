"""Seals: the daemon's own mark (an HMAC under its key) on every outbox document it admitted or
made, so a document anyone inserted with a `state` of their choosing is never taken for one.

A seal covers what a message is (its `_id`, user, the number it goes to as intake normalised
it, body, and the other signed fields but `from`) and how it entered the outbox: `admitted`
from a producer's document, or `made` by the daemon (a broadcast's messages, replies). It does
not cover `state` or any other field the daemon changes later: only the daemon's role may
update the outbox, and a producer, who may only insert, cannot copy a seal to a new `_id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobs.clock import as_utc
from jobs.errors import InputError
from jobs.rules import phone, signing

VERSION = "sms-outbox-seal-v1"
ADMITTED = "admitted"
MADE = "made"
ORIGINS = (ADMITTED, MADE)
# `from` is left out: the daemon records there the number a message went out from, and the
# signature already binds the number the producer asked for.
SEALED_FIELDS = (
    *(name for name in signing.SIGNED_FIELDS if name != "from"),
    "reply_to",
    "priority_requested",
)


def _id_text(doc: Mapping[str, Any]) -> str:
    """The `_id` as text: an ObjectId or string as it is signed, any other type by its type and
    representation, so two ids of different types never seal alike."""
    signed = signing.signed_id(doc)
    if signed is not None:
        return signed
    value = doc.get("_id")
    return f"{type(value).__name__}:{value!r}"


def _number(value: Any) -> Any:
    try:
        return phone.normalize(value)
    except InputError:
        return value


def _iso(value: Any) -> Any:
    if not isinstance(value, datetime):
        return value
    try:
        utc = as_utc(value)
    except OverflowError:  # year 1 east of UTC or year 9999 west of it: sealed as written
        return value.isoformat(timespec="milliseconds")
    # BSON keeps milliseconds, so the seal does too.
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def canonical(doc: Mapping[str, Any], origin: str) -> bytes:
    """The bytes a seal covers: the version, the origin and the sealed fields, in order."""
    values: list[Any] = [VERSION, origin]
    for name in SEALED_FIELDS:
        value = doc.get(name)
        if name == "_id":
            value = _id_text(doc)
        elif name == "to" and value is not None:
            value = _number(value)
        elif name == "priority" and value is None:
            value = 0
        values.append(_iso(value))
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=repr)
    return text.encode("utf-8", errors="surrogatepass")


def seal(key: str, doc: Mapping[str, Any], origin: str) -> str:
    """The seal of `doc` under the daemon's `key`, to be stored in its `seal` field."""
    return hmac.new(key.encode("utf-8"), canonical(doc, origin), hashlib.sha256).hexdigest()


def sealed(key: str, doc: Mapping[str, Any], origin: str | None = None) -> bool:
    """True when `doc` carries the daemon's seal (of `origin`, or of either origin)."""
    given = doc.get("seal")
    if not isinstance(given, str) or not given.isascii():
        return False
    try:
        origins = ORIGINS if origin is None else (origin,)
        if origin is None and "campaign" in doc:
            # Producers cannot set a campaign: one that has it is most likely one the daemon
            # made, so that seal is worked out first (either still counts).
            origins = (MADE, ADMITTED)
        return any(hmac.compare_digest(given, seal(key, doc, o)) for o in origins)
    except (TypeError, ValueError, OverflowError, RecursionError):
        # Fields no canonical form can hold: nothing the daemon sealed.
        return False
