"""North American phone numbers: parsing any common spelling into Flowroute's `1NPANXXXXXX` form."""

from __future__ import annotations

import functools

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from jobs.errors import InputError

_REASON = "invalid_number"
_POSSIBLE_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
}


def normalize(raw: object) -> str:
    """Return `raw` as an 11-digit North American number, or raise InputError saying why not."""
    if not isinstance(raw, str):
        raise InputError(f"phone number must be text, not {type(raw).__name__}", _REASON)
    number, problem = _parsed(raw)
    if problem is not None:
        raise InputError(problem, _REASON)
    assert number is not None
    return number


# A message's number is read several times on its way (its signature, its seal, the checks):
# libphonenumber's validity check is the costly part of a fan-out, so each spelling is parsed
# once while it is in use. About 4 MiB when full.
@functools.lru_cache(maxsize=16_384)
def _parsed(raw: str) -> tuple[str | None, str | None]:
    """The number, or why `raw` is none."""
    try:
        return _parse(raw), None
    except InputError as exc:
        return None, str(exc)


def _parse(raw: str) -> str:
    text = raw.strip()
    if not text:
        raise InputError("phone number is empty", _REASON)
    if len(text) > 40 or "\x00" in text:
        raise InputError("phone number is not a phone number", _REASON)
    # phonenumbers reads letters as a keypad would (206555CALL, 206555OlOl): a typo or a vanity
    # spelling would then become some stranger's number. Only a tel: prefix may carry letters.
    if text[:4].lower() == "tel:":
        text = text[4:]
    if any(ch.isalpha() for ch in text):
        raise InputError(
            f"{raw!r} contains letters; write the number in digits (letters are never converted)",
            _REASON,
        )
    # Eleven bare digits starting with 1 are already in Flowroute's form; give them the + so the
    # library does not read the leading 1 as part of a national number.
    if text.isdigit() and len(text) == 11 and text.startswith("1"):
        text = "+" + text
    number = _read(raw, text)
    if number.country_code != 1:
        raise InputError(
            f"{raw!r} is outside North America (country code +{number.country_code})", _REASON
        )
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible in _POSSIBLE_REASONS:
        raise InputError(
            f"{raw!r} is {_POSSIBLE_REASONS[possible]} for a North American number", _REASON
        )
    if not phonenumbers.is_valid_number(number):
        raise InputError(
            f"{raw!r} is not an assigned North American number (check the area code)", _REASON
        )
    return f"1{number.national_number:010d}"


def is_normalized(value: object) -> bool:
    """True when `value` already has the 11-digit form (cheap check, no validation of the area)."""
    return isinstance(value, str) and len(value) == 11 and value.isdigit() and value[0] == "1"


def _read(raw: str, text: str) -> phonenumbers.PhoneNumber:
    """`text` as libphonenumber reads it. A number already in Flowroute's form (+1 and an area
    code, which never starts with 0 or 1) is the number libphonenumber would read, made without
    its parser: most of a fan-out's recipients are stored so, and parsing is the slow part."""
    if len(text) == 12 and text[1] == "1" and text[2] in "23456789" and text[1:].isdigit():
        return phonenumbers.PhoneNumber(country_code=1, national_number=int(text[2:]))
    try:
        return phonenumbers.parse(text, "US")
    except NumberParseException as exc:
        raise InputError(f"{raw!r} is not a phone number: {exc._msg}", _REASON) from None
