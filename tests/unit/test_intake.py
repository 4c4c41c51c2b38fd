"""Intake decides a producer document's first state: queued with a due time, or rejected and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.model import Reason
from jobs.rules.intake import admit
from jobs.rules.segments import normalize_text

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
VALID: dict[str, Any] = {"user": "alice", "to": "(312) 555-0199", "body": "hello"}
BROADCAST: dict[str, Any] = {"user": "alice", "audience": "verified", "body": "news"}


def reason_of(doc: dict[str, Any]) -> Reason:
    admission = admit(doc, NOW)
    assert admission.problem is not None, f"{doc!r} was admitted"
    assert admission.fields == {}
    return admission.problem.code


def test_valid_message_is_queued_due_now_with_normalised_number() -> None:
    admission = admit(VALID, NOW)

    assert admission.problem is None
    assert admission.broadcast is False
    assert admission.fields == {
        "user": "alice",
        "to": "13125550199",
        "body": "hello",
        "priority": 0,
        "due_at": NOW,
        "attempts": 0,
        "segments": 1,
        "encoding": "ascii",
    }


def test_source_number_and_key_are_kept_normalised() -> None:
    admission = admit({**VALID, "from": "+1 (206) 555-0100", "key": "order-17"}, NOW)

    assert admission.fields["from"] == "12065550100"
    assert admission.fields["key"] == "order-17"


def test_send_at_becomes_due_at_in_utc() -> None:
    chicago = timezone(timedelta(hours=-6))
    admission = admit({**VALID, "send_at": datetime(2026, 1, 6, 9, 0, tzinfo=chicago)}, NOW)

    assert admission.fields["due_at"] == datetime(2026, 1, 6, 15, 0, tzinfo=UTC)
    assert admission.fields["due_at"].utcoffset() == timedelta(0)
    assert "send_at" not in admission.fields


def test_naive_send_at_is_read_as_utc() -> None:
    admission = admit({**VALID, "send_at": datetime(2026, 1, 6, 9, 0)}, NOW)

    assert admission.fields["due_at"] == datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("priority", [-100, 0, 7, 100])
def test_priority_in_range_is_kept(priority: int) -> None:
    assert admit({**VALID, "priority": priority}, NOW).fields["priority"] == priority


@pytest.mark.parametrize("priority", [-101, 101, 10**9, True, 1.5, "5"])
def test_priority_out_of_range_or_not_whole_is_invalid_document(priority: Any) -> None:
    admission = admit({**VALID, "priority": priority}, NOW)

    assert admission.problem is not None
    assert admission.problem.code is Reason.INVALID_DOCUMENT
    assert admission.problem.detail.startswith("priority")


@pytest.mark.parametrize(
    "changes",
    [
        {"user": 42},
        {"user": None},
        {"user": ""},
        {"user": "x" * 201},
        {"body": ["hello"]},
        {"body": None},
        {"key": 7},
        {"send_at": "2026-01-06T09:00:00Z"},
    ],
    ids=repr,
)
def test_wrong_types_are_invalid_document(changes: dict[str, Any]) -> None:
    assert reason_of({**VALID, **changes}) is Reason.INVALID_DOCUMENT


@pytest.mark.parametrize(
    "changes",
    [
        {"user": {"$ne": None}},
        {"user": "$where"},
        {"body": {"$gt": ""}},
        {"key": {"$exists": True}},
        {"key": "$regex"},
        {"priority": {"$gt": 0}},
        {"send_at": {"$lt": NOW}},
    ],
    ids=repr,
)
def test_operator_values_are_invalid_document(changes: dict[str, Any]) -> None:
    assert reason_of({**VALID, **changes}) is Reason.INVALID_DOCUMENT


@pytest.mark.parametrize(
    "changes", [{"body": "hel\x00lo"}, {"body": "\x00"}, {"user": "al\x00ice"}, {"key": "k\x00"}]
)
def test_nul_characters_are_invalid_document(changes: dict[str, Any]) -> None:
    assert reason_of({**VALID, **changes}) is Reason.INVALID_DOCUMENT


@pytest.mark.parametrize(
    "changes",
    [
        {"to": "12345"},
        {"to": "+44 20 7946 0958"},
        {"to": "+1 999 555 0199"},
        {"to": "call me"},
        {"to": 13125550199},
        {"from": "1206555010"},
    ],
    ids=repr,
)
def test_bad_numbers_are_invalid_number(changes: dict[str, Any]) -> None:
    admission = admit({**VALID, **changes}, NOW)

    assert admission.problem is not None
    assert admission.problem.code is Reason.INVALID_NUMBER
    field = next(iter(changes))
    assert admission.problem.detail.startswith(f"{field}: ")


@pytest.mark.parametrize("body", ["", " ", "\n\t  "])
def test_blank_body_is_empty_body(body: str) -> None:
    assert reason_of({**VALID, "body": body}) is Reason.EMPTY_BODY


@pytest.mark.parametrize(
    "body",
    [
        "\u3164", "\u2800\u2800", "\u115f\u1160", "\uffa0",  # fillers that render blank
        "\U000e0041\U000e0042\U000e007f",  # tag characters
        "\u200b\u2060\ufeff\u00ad", "\u180e\u034f", "\ufe0f\U000e0100",  # invisibles
        "\u3000\u00a0\u2007", "\u17b4 \u3164\n",
    ],
)  # fmt: skip
def test_a_body_that_only_looks_blank_is_empty_body(body: str) -> None:
    admission = admit({**VALID, "body": body}, NOW)
    assert admission.problem is not None and admission.problem.code is Reason.EMPTY_BODY


@pytest.mark.parametrize(
    "body", ["hi \u3164", "\u2800x", "\U0001f44d", "\u05e9\u05dc\u05d5\u05dd\u200f"]
)
def test_a_body_with_something_visible_is_accepted(body: str) -> None:
    assert admit({**VALID, "body": body}, NOW).problem is None


@pytest.mark.parametrize("control", ["\u202e", "\u202a", "\u202d", "\u2066", "\u2067", "\u2069"])
def test_bidirectional_controls_are_rejected_with_the_reason(control: str) -> None:
    admission = admit({**VALID, "body": f"pay {control}0001 ot"}, NOW)

    assert admission.problem is not None
    assert admission.problem.code is Reason.INVALID_DOCUMENT
    assert f"bidirectional control character U+{ord(control):04X}" in admission.problem.detail


def test_body_over_1600_characters_is_body_too_long() -> None:
    admission = admit({**VALID, "body": "x" * 1601}, NOW)

    assert admission.problem is not None
    assert admission.problem.code is Reason.BODY_TOO_LONG
    assert "1601" in admission.problem.detail


def test_body_of_exactly_1600_characters_is_accepted_when_segments_allow() -> None:
    assert admit({**VALID, "body": "é" * 1600}, NOW, max_segments=23).problem is None


def test_body_over_max_segments_is_body_too_long() -> None:
    admission = admit({**VALID, "body": "é" * 1600}, NOW, max_segments=22)

    assert admission.problem is not None
    assert admission.problem.code == "body_too_long"
    assert "23 ucs2 segments" in admission.problem.detail


def test_segments_are_counted_after_typographic_quotes_become_ascii() -> None:
    body = "\u201cHi\u201d \u2014 it\u2019s " + "x" * 148  # 160 characters once normalised

    admission = admit({**VALID, "body": body}, NOW)

    assert (admission.fields["segments"], admission.fields["encoding"]) == (1, "ascii")
    assert admission.fields["body"] == body  # the signed text is kept as the producer wrote it


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\n\r\t"),
        min_size=1,
        max_size=1600,
    ).filter(lambda s: normalize_text(s).strip())
)
def test_any_non_blank_body_within_the_limit_is_kept_unchanged(body: str) -> None:
    admission = admit({**VALID, "body": body}, NOW, max_segments=100)

    assert admission.problem is None
    assert admission.fields["body"] == body


def test_first_failing_field_is_the_reason() -> None:
    admission = admit({"user": 5, "to": "nope", "body": ""}, NOW)

    assert admission.problem is not None
    assert admission.problem.code is Reason.INVALID_DOCUMENT
    assert admission.problem.detail.startswith("user")


def test_broadcast_is_admitted_without_recipient() -> None:
    admission = admit(BROADCAST, NOW)

    assert admission.problem is None
    assert admission.broadcast is True
    assert admission.fields == {
        "user": "alice",
        "audience": "verified",
        "body": "news",
        "priority": 0,
        "due_at": NOW,
        "attempts": 0,
        "segments": 1,
        "encoding": "ascii",
    }


@pytest.mark.parametrize("audience", ["all", None, {"$ne": None}, "Verified"])
def test_broadcast_audience_other_than_verified_is_invalid_document(audience: Any) -> None:
    admission = admit({**BROADCAST, "audience": audience}, NOW)

    assert admission.broadcast is True
    assert admission.problem is not None
    assert admission.problem.code is Reason.INVALID_DOCUMENT
    assert admission.problem.detail.startswith("audience")


def test_broadcast_that_also_names_a_recipient_is_invalid_document() -> None:
    admission = admit({**BROADCAST, "to": "13125550199"}, NOW)

    assert admission.problem is not None
    assert admission.problem.code is Reason.INVALID_DOCUMENT
    assert "'to'" in admission.problem.detail


def test_broadcast_body_is_checked_like_a_message() -> None:
    assert reason_of({**BROADCAST, "body": "x" * 1601}) is Reason.BODY_TOO_LONG
