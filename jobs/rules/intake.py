"""Intake: what makes a document in `outbox` acceptable, decided without touching the database."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from jobs.clock import as_utc
from jobs.errors import InputError
from jobs.model import BROADCAST_AUDIENCE, DEFAULT_MAX_SEGMENTS, MAX_BODY_CHARS, Problem, Reason
from jobs.rules import phone, segments

MAX_NAME_CHARS = 200
PRIORITY_RANGE = range(-100, 101)
PRODUCER_FIELDS = frozenset(
    {"_id", "user", "to", "from", "body", "key", "send_at", "priority", "audience"}
)


@dataclass(frozen=True)
class Admission:
    """What the daemon sets on a new outbox document: its first state, or why it is refused."""

    fields: dict[str, Any] = field(default_factory=dict)
    problem: Problem | None = None
    broadcast: bool = False
    strip: tuple[str, ...] = ()  # daemon-owned fields the producer's document carries
    seal: str | None = None  # the daemon's seal of the admitted document (jobs/rules/seal.py)


def stored(doc: Mapping[str, Any], admission: Admission) -> dict[str, Any]:
    """The document as admission leaves it: the daemon-owned fields removed, the checked fields
    (normalised numbers, the priority granted) set; what the seal covers."""
    kept = {k: v for k, v in doc.items() if k not in admission.strip}
    return {**kept, **admission.fields}


def duplicate_key(admission: Admission, other_id: Any) -> Admission:
    """The admission of a document whose idempotency key its user already had admitted, as
    `other_id`: a duplicate."""
    key = admission.fields.get("key")
    problem = Problem(Reason.DUPLICATE_KEY, f"key {key!r} is message {other_id}")
    return Admission(problem=problem, broadcast=admission.broadcast)


def check_max_priority(value: object) -> int:
    """A grant's highest priority: a whole number from 0 to 100."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InputError("max_priority must be a whole number from 0 to 100")
    return value


def grant_priority(grant: Mapping[str, Any]) -> int:
    """The highest priority one grant in `authorized` allows; one that is missing or not a
    whole number from 0 to 100 allows 0."""
    try:
        return check_max_priority(grant.get("max_priority", 0))
    except InputError:
        return 0


def clamp_priority(admission: Admission, max_priority: int) -> Admission:
    """At most the priority the user's grant allows; the requested one is kept beside it,
    since the producer's signature covers it."""
    requested = admission.fields.get("priority")
    if admission.problem is not None or not isinstance(requested, int) or requested <= max_priority:
        return admission
    fields = {**admission.fields, "priority": max_priority, "priority_requested": requested}
    return replace(admission, fields=fields)


def check_name(value: object, what: str) -> str:
    """A user name or key: short, non-empty text without control characters or a leading `$`."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, not {type(value).__name__}")
    if not value.strip():
        raise InputError(f"{what} is empty")
    if len(value) > MAX_NAME_CHARS:
        raise InputError(f"{what} is longer than {MAX_NAME_CHARS} characters")
    if value.startswith("$") or any(ord(ch) < 32 for ch in value):
        raise InputError(f"{what} contains a control character or starts with '$'")
    return value


# Line breaks and tabs are ordinary in a text message; every other C0 or C1 control character
# (and DEL) is not text a person wrote, and some reach a phone as garbage.
_BODY_CONTROLS = frozenset(
    {chr(c) for c in range(0x20) if chr(c) not in "\n\r\t"} | {chr(c) for c in range(0x7F, 0xA0)}
)


# Characters that render as nothing, or as blank space, without being whitespace or format
# characters: Hangul and braille fillers, Khmer and Mongolian invisibles, the grapheme joiner.
_BLANK_LOOKING = frozenset("\u3164\u2800\u115f\u1160\uffa0\u17b4\u17b5\u180e\u034f")
# Embeddings, overrides and isolates reorder the text around them: what the phone shows is not
# what was written (and reviewed). The implicit marks (LRM, RLM, ALM) are left to RTL writers.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _invisible(ch: str) -> bool:
    """Whether a character shows nothing a reader could see: whitespace, a format character
    (zero-width ones, tags), a variation selector, or a blank-looking filler."""
    code = ord(ch)
    return (
        ch.isspace()
        or unicodedata.category(ch) in ("Cf", "Zs", "Zl", "Zp", "Cs")
        or ch in _BLANK_LOOKING
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
    )


def check_body(value: object) -> str:
    """The text to send: something visible, at most MAX_BODY_CHARS characters, no control
    characters other than line breaks and tabs, no bidirectional controls."""
    if not isinstance(value, str):
        raise InputError(f"body must be text, not {type(value).__name__}")
    # A body of invisible characters only would reach the phone as an empty text.
    if all(_invisible(ch) for ch in segments.normalize_text(value)):
        raise InputError("body is empty or shows nothing visible", Reason.EMPTY_BODY)
    if len(value) > MAX_BODY_CHARS:
        raise InputError(
            f"body has {len(value)} characters; the limit is {MAX_BODY_CHARS}", Reason.BODY_TOO_LONG
        )
    bad = next((ch for ch in value if ch in _BODY_CONTROLS), None)
    if bad is not None:
        what = "a NUL character" if bad == "\x00" else f"the control character U+{ord(bad):04X}"
        raise InputError(f"body contains {what}")
    bidi = next((ch for ch in value if ch in _BIDI_CONTROLS), None)
    if bidi is not None:
        raise InputError(
            f"body contains the bidirectional control character U+{ord(bidi):04X}, which"
            " makes the text show in another order than it was written"
        )
    return value


def admit(
    doc: Mapping[str, Any], now: datetime, max_segments: int = DEFAULT_MAX_SEGMENTS
) -> Admission:
    """Decide the first state of a producer's document: queued with a due time, or rejected.

    The body is measured as Flowroute bills it, after typographic quotes and dashes become ASCII;
    a body of more than `max_segments` segments is rejected.
    """
    checked: dict[str, Any] = {}
    broadcast = "audience" in doc
    for name, check in _checks(broadcast):
        try:
            value = check(doc.get(name))
        except InputError as exc:
            text = str(exc)
            detail = text if text.startswith(name) else f"{name}: {text}"
            problem = Problem(Reason(exc.reason), detail)
            return Admission(problem=problem, broadcast=broadcast)
        if value is not None:
            checked[name] = value
    size = segments.measure(segments.normalize_text(checked["body"]))
    if size.segments > max_segments:
        detail = f"body is {size.segments} {size.encoding} segments; max_segments is {max_segments}"
        return Admission(problem=Problem(Reason.BODY_TOO_LONG, detail), broadcast=broadcast)
    send_at = checked.pop("send_at", None)
    checked.setdefault("priority", 0)
    checked.update(
        due_at=send_at or now, attempts=0, segments=size.segments, encoding=size.encoding
    )
    return Admission(fields=checked, broadcast=broadcast)


def _optional(check: Any) -> Any:
    return lambda value: None if value is None else check(value)


def _check_send_at(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InputError(f"send_at must be a date, not {type(value).__name__}")
    try:
        return as_utc(value)
    except OverflowError:  # year 1 east of UTC or year 9999 west of it
        raise InputError(f"send_at {value.isoformat()} is out of range in UTC") from None


def _check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in PRIORITY_RANGE:
        raise InputError("priority must be a whole number from -100 to 100")
    return value


def _check_audience(value: object) -> str:
    if value != BROADCAST_AUDIENCE:
        raise InputError(f"audience must be {BROADCAST_AUDIENCE!r}")
    return BROADCAST_AUDIENCE


def _check_to(value: object) -> str:
    if value is None:
        raise InputError("to is missing; a broadcast sets audience instead")
    return phone.normalize(value)


def _no_to(value: object) -> None:
    if value is not None:
        raise InputError("a broadcast (audience) must not also name a recipient in 'to'")


def _checks(broadcast: bool) -> list[tuple[str, Any]]:
    target = ("audience", _check_audience) if broadcast else ("to", _check_to)
    checks: list[tuple[str, Any]] = [
        ("user", lambda v: check_name(v, "user")),
        target,
        ("body", check_body),
        ("from", _optional(phone.normalize)),
        ("key", _optional(lambda v: check_name(v, "key"))),
        ("send_at", _optional(_check_send_at)),
        ("priority", _optional(_check_priority)),
    ]
    if broadcast:
        checks.append(("to", _no_to))
    return checks
