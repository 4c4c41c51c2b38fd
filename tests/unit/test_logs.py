"""Logging: the redaction processor removes every secret, wherever it sits in an event."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from scheduler.logs import REDACTED, Redactor, configure, mask_numbers

SECRET = "sk-51c7e2aa90"
PASSWORD = "pw-9e8d7c6b"


def redact(event: dict[str, object], secrets: tuple[str, ...] = (SECRET, PASSWORD)) -> object:
    return Redactor(secrets)(None, "info", event)


def test_secret_inside_nested_values_is_replaced() -> None:
    event = {
        "event": "message.failed",
        "detail": f"auth {SECRET} refused",
        "request": {"headers": {"auth": [f"Basic {SECRET}", ("x", f"uri=...:{PASSWORD}@db")]}},
        "count": 3,
        "ok": False,
        "missing": None,
    }

    assert redact(event) == {
        "event": "message.failed",
        "detail": f"auth {REDACTED} refused",
        "request": {"headers": {"auth": [f"Basic {REDACTED}", ["x", f"uri=...:{REDACTED}@db"]]}},
        "count": 3,
        "ok": False,
        "missing": None,
    }


def test_secret_inside_other_objects_is_replaced_in_their_text() -> None:
    cleaned = redact({"error": ValueError(f"bad key {SECRET}")})

    assert cleaned == {"error": f"bad key {REDACTED}"}


def test_a_secret_containing_another_is_removed_whole() -> None:
    cleaned = redact({"detail": "key=abcd1234-tail"}, ("abcd", "abcd1234-tail"))

    assert cleaned == {"detail": f"key={REDACTED}"}


def test_every_occurrence_is_replaced() -> None:
    assert redact({"detail": f"{SECRET}/{SECRET}"}) == {"detail": f"{REDACTED}/{REDACTED}"}


def test_values_too_short_to_be_secrets_are_left_alone() -> None:
    assert redact({"detail": "a b abc"}, ("a", "abc", "")) == {"detail": "a b abc"}


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_structlog")
def test_configured_json_logs_carry_no_secret() -> None:
    out = io.StringIO()
    configure("info", "json", secrets=[SECRET], stream=out)

    structlog.get_logger("test").info("message.sent", detail={"auth": [SECRET]}, to="13125550199")

    record = json.loads(out.getvalue())
    assert SECRET not in out.getvalue()
    assert (record["event"], record["detail"], record["to"]) == (
        "message.sent",
        {"auth": [REDACTED]},
        "*******0199",
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("13125550199", "*******0199"),
        ("recipient (206) 555-0103 has opted out", "recipient ******0103 has opted out"),
        ("+1 206 555 0108", "*******0108"),
        ("6b1251130629ef5d720dc198:13125550199", "6b1251130629ef5d720dc198:*******0199"),
    ],
)
def test_phone_numbers_are_masked_to_their_last_four_digits(text: str, masked: str) -> None:
    assert mask_numbers(text) == masked


@pytest.mark.parametrize(
    "text",
    ["6b1251130629ef5d720dc198", "mdr2-00000000000000000000000000000001", "2026-12-04",
     "took 1234 ms", "attempts 9223372036854775807"],
)  # fmt: skip
def test_ids_dates_and_counts_are_not_taken_for_numbers(text: str) -> None:
    assert mask_numbers(text) == text


@pytest.mark.usefixtures("restore_structlog")
def test_masking_can_be_turned_off_and_nested_numbers_are_masked_when_on() -> None:
    masked, whole = io.StringIO(), io.StringIO()
    configure("info", "json", stream=masked)
    structlog.get_logger("t").warning("reply.limited", evidence={"number": ["12065550103"]})
    configure("info", "json", stream=whole, mask=False)
    structlog.get_logger("t").warning("reply.limited", to="12065550103")

    assert json.loads(masked.getvalue())["evidence"] == {"number": ["*******0103"]}
    assert json.loads(whole.getvalue())["to"] == "12065550103"
