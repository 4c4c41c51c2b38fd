"""The import's normaliser gives what `phone.normalize` gives, spelling by spelling."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.errors import InputError
from jobs.mongo.importer import Normalizer
from jobs.rules import phone


def outcome(normalize: object, spelling: str) -> str:
    try:
        return str(normalize(spelling))  # type: ignore[operator]
    except InputError as exc:
        return f"refused: {exc}"


SPELLINGS = [
    "12065550101", "2065550102", "+1 (206) 555-0103", "206.555.0104", "1 206 555 0105",
    "+2065550106", "1065550107", "2061550108", "11065550109", "+44 20 7946 0958",
    "206555CALL", "(999) 555-0110", "9005550111", "2065550112 ", "",
]  # fmt: skip


def test_known_spellings_normalise_as_phone_normalize_does() -> None:
    normalizer = Normalizer()
    for spelling in SPELLINGS:
        assert outcome(normalizer.normalize, spelling) == outcome(phone.normalize, spelling)


@settings(max_examples=1000, deadline=None)
@given(
    area=st.integers(100, 999),
    exchange=st.integers(0, 999),
    line=st.integers(0, 9999),
    layout=st.sampled_from(["1{a}{e}{l}", "{a}{e}{l}", "+1 ({a}) {e}-{l}", "{a}.{e}.{l}"]),
)
def test_any_number_normalises_as_phone_normalize_does(
    area: int, exchange: int, line: int, layout: str
) -> None:
    normalizer = Normalizer()
    spelling = layout.format(a=f"{area:03d}", e=f"{exchange:03d}", l=f"{line:04d}")

    assert outcome(normalizer.normalize, spelling) == outcome(phone.normalize, spelling)
