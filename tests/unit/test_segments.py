"""Segments: length, encoding and typographic clean-up follow Flowroute's billing table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.rules.segments import ASCII, UCS2, Measure, measure, normalize_text

# Typographic characters that look like ASCII, mixed with genuine non-ASCII text.
TYPOGRAPHIC = "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0\u200b\u00ad\u2022\u3000"
bodies = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(TYPOGRAPHIC))


def test_empty_body_has_no_segments() -> None:
    assert measure("") == Measure(ASCII, 0, 0)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (140, 1), (160, 1), (161, 2), (280, 2), (281, 3), (420, 3), (421, 4)],
)
def test_ascii_is_one_segment_up_to_160_then_140_per_segment(length: int, segments: int) -> None:
    assert measure("a" * length) == Measure(ASCII, segments, length)


def test_one_accent_switches_the_whole_message_to_ucs2() -> None:
    body = "a" * 99 + "é"

    assert measure("a" * 100) == Measure(ASCII, 1, 100)
    assert measure(body) == Measure(UCS2, 2, 100)


@pytest.mark.parametrize(("length", "segments"), [(70, 1), (71, 2), (140, 2), (141, 3)])
def test_ucs2_is_70_units_per_segment(length: int, segments: int) -> None:
    assert measure("é" * length) == Measure(UCS2, segments, length)


def test_emoji_counts_two_units() -> None:
    assert measure("👍") == Measure(UCS2, 1, 2)
    assert measure("👍" * 35) == Measure(UCS2, 1, 70)
    assert measure("👍" * 35 + "a") == Measure(UCS2, 2, 71)


def test_lone_surrogate_is_measured_rather_than_crashing() -> None:
    assert measure("hi \ud83d") == Measure(UCS2, 1, 4)


@pytest.mark.parametrize(
    ("typographic", "plain"),
    [
        *((char, "'") for char in "\u2018\u2019\u201a\u201b\u2032"),
        *((char, '"') for char in "\u201c\u201d\u201e\u201f\u2033"),
        *((char, "-") for char in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"),
        ("\u2026", "..."),
        *((char, " ") for char in "\u00a0\u2002\u2005\u2007\u2009\u200a\u202f\u205f\u3000"),
        *((char, "") for char in "\u200b\u200c\u200d\u2060\ufeff\u00ad"),
        ("\u2022", "*"),
    ],
)
def test_typographic_characters_become_plain_ascii(typographic: str, plain: str) -> None:
    assert normalize_text(f"a{typographic}b") == f"a{plain}b"


def test_smart_quoted_160_character_message_stays_one_ascii_segment() -> None:
    body = "\u201cHi\u201d \u2014 it\u2019s\u00a0time" + "x" * 144
    assert len(body) == 160
    assert measure(body).encoding == UCS2

    normalized = normalize_text(body)

    assert normalized == '"Hi" - it\'s time' + "x" * 144
    assert measure(normalized) == Measure(ASCII, 1, 160)


@pytest.mark.parametrize(
    "body", ["Café à Señor Muñoz", "中文短信", "See you 👋", "\uff26\uff55\uff4c\uff4c"]
)
def test_genuine_non_ascii_text_is_kept(body: str) -> None:
    assert normalize_text(body) == body


@given(bodies)
def test_normalising_is_idempotent(body: str) -> None:
    once = normalize_text(body)

    assert normalize_text(once) == once


@given(bodies, bodies)
def test_segments_never_decrease_as_text_grows(body: str, more: str) -> None:
    assert measure(body + more).segments >= measure(body).segments


@given(bodies)
def test_only_the_empty_body_is_free(body: str) -> None:
    assert (measure(body).segments == 0) == (body == "")
