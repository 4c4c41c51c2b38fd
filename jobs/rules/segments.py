"""Message length and encoding as Flowroute bills them, and the clean-up that keeps text ASCII."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ASCII: Final = "ascii"
UCS2: Final = "ucs2"

_ASCII_SINGLE: Final = 160
_ASCII_PART: Final = 140
_UCS2_PART: Final = 70

_REPLACEMENTS: Final[dict[str, str | None]] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"'),
    # The hyphen and non-breaking hyphen look like "-" and would cost the same switch to UCS-2.
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    "\u2026": "...",
    **dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a", " "),
    **dict.fromkeys("\u202f\u205f\u3000", " "),
    "\u2022": "*",
    # Zero-width characters and the soft hyphen are invisible: dropping them changes nothing read.
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad"),
}
_TABLE: Final = str.maketrans(_REPLACEMENTS)


@dataclass(frozen=True, slots=True)
class Measure:
    """How Flowroute bills a body: `characters` are billing units (UTF-16 code units for UCS-2)."""

    encoding: str
    segments: int
    characters: int


def normalize_text(body: str) -> str:
    """Replace typographic quotes, dashes, spaces and invisibles by ASCII; keep real non-ASCII text.

    One smart quote would make the whole message UCS-2 (up to three times the cost), and Flowroute
    is known to fail on them.
    """
    return body.translate(_TABLE)


def measure(body: str) -> Measure:
    """Encoding, segment count and billing units of `body` exactly as given (normalise it first)."""
    if body.isascii():
        length = len(body)
        segments = 1 if 0 < length <= _ASCII_SINGLE else _ceil_div(length, _ASCII_PART)
        return Measure(ASCII, segments, length)
    # Characters outside the BMP (emoji) take a surrogate pair; lone surrogates count as one unit
    # rather than crash, since bodies arrive from JSON that may carry them.
    units = len(body.encode("utf-16-le", "surrogatepass")) // 2
    return Measure(UCS2, _ceil_div(units, _UCS2_PART), units)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
