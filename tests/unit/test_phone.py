"""Phone numbers: any common North American spelling becomes Flowroute's `1NPANXXXXXX` form."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.errors import InputError
from jobs.rules import phone


@pytest.mark.parametrize(
    "raw",
    [
        "13125550199",
        "+13125550199",
        "3125550199",
        "(312) 555-0199",
        "312.555.0199",
        "312-555-0199",
        "1-312-555-0199",
        "+1 (312) 555-0199",
        "  +1 312 555 0199\n",
        "tel:+1-312-555-0199",
    ],
)
def test_common_spellings_are_normalised(raw: str) -> None:
    assert phone.normalize(raw) == "13125550199"


def test_canadian_and_toll_free_numbers_are_north_american() -> None:
    assert phone.normalize("+1 204 555 0100") == "12045550100"
    assert phone.normalize("1 800 555 0100") == "18005550100"


def test_normalising_is_idempotent() -> None:
    once = phone.normalize("(312) 555-0199")

    assert phone.normalize(once) == once
    assert phone.is_normalized(once)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("+44 20 7946 0958", "outside North America (country code +44)"),
        ("+33 1 42 68 53 00", "outside North America (country code +33)"),
        ("312555", "too short"),
        ("+1 312 555 01999", "too long"),
        ("+1 999 555 0199", "not an assigned North American number"),
        ("9995550199", "not an assigned North American number"),
        ("call me maybe", "contains letters"),
        ("206555CALL", "contains letters"),
        ("206555OlOl", "contains letters"),
        ("1-800-FLOWERS", "contains letters"),
        ("+1 206 555 0101 ext 5", "contains letters"),
        ("tel:206555CALL", "contains letters"),
        ("", "empty"),
        ("   ", "empty"),
        ("312\x005550199", "not a phone number"),
        ("1" * 41, "not a phone number"),
    ],
)
def test_refusals_say_why(raw: str, why: str) -> None:
    with pytest.raises(InputError) as refused:
        phone.normalize(raw)

    assert refused.value.reason == "invalid_number"
    assert why in str(refused.value)


@pytest.mark.parametrize("raw", [13125550199, None, ["13125550199"], {"$ne": None}])
def test_non_text_is_refused_as_invalid_number(raw: Any) -> None:
    with pytest.raises(InputError, match="must be text") as refused:
        phone.normalize(raw)

    assert refused.value.reason == "invalid_number"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("13125550199", True),
        ("+13125550199", False),
        ("3125550199", False),
        ("23125550199", False),
        ("1312555019x", False),
        (13125550199, False),
    ],
)
def test_is_normalized_recognises_only_the_eleven_digit_form(value: Any, expected: bool) -> None:
    assert phone.is_normalized(value) is expected
