"""Reading Flowroute's callbacks: both payload shapes, and clear refusals of anything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from jobs.errors import InputError
from jobs.rules import callbacks

ID = "mdr2-" + "ab" * 16


def raw(document: Any) -> bytes:
    return json.dumps(document).encode()


def test_a_json_api_receipt_keeps_level_status_code_description_and_time() -> None:
    document = {
        "data": {
            "id": ID,
            "type": "delivery_receipt",
            "attributes": {
                "body": "hi", "level": 2, "status": "message buffered", "status_code": 1003,
                "status_code_description": "Message buffered",
                "timestamp": "2026-01-05T15:00:01.5Z",
            },
            "links": {"related": "x"},
        }
    }  # fmt: skip
    fields = callbacks.parse(callbacks.DLR, raw(document))
    assert fields == {
        "provider_id": ID,
        "level": 2,
        "status": "message buffered",
        "status_code": "1003",
        "description": "Message buffered",
        "timestamp": datetime(2026, 1, 5, 15, 0, 1, 500000, tzinfo=UTC),
    }


@pytest.mark.parametrize("code", [None, "1003", 1003])
def test_a_flat_receipt_with_any_status_code_form_is_read(code: Any) -> None:
    document = {"id": ID, "level": "1", "status": "smsc submit", "timestamp": "2026-01-05"}
    if code is not None:
        document["status_code"] = code
    fields = callbacks.parse(callbacks.DLR, raw(document))
    assert (fields["level"], fields["status"]) == (1, "smsc submit")
    assert fields["status_code"] == (None if code is None else "1003")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        raw({"data": []}),
        raw({"data": {"id": ID, "type": "message", "attributes": {"status": "x"}}}),
        raw({"data": {"id": "12", "attributes": {"status": "x"}}}),
        raw({"id": ID}),
        raw({"id": ID, "status": "x" * 101}),
        raw({"id": ID, "status": "ok", "status_code": {"a": 1}}),
        raw({"id": ID, "status": "ok", "level": "high"}),
        b"\xff\xfe",
    ],
)
def test_malformed_receipts_are_refused(body: bytes) -> None:
    with pytest.raises(InputError):
        callbacks.parse(callbacks.DLR, body)


def test_an_inbound_message_in_either_shape() -> None:
    attributes = {"from": "+13125550199", "to": "12065550100", "body": " Stop ", "timestamp": "x"}
    wrapped = {"data": {"id": ID, "type": "message", "attributes": attributes}}
    fields = callbacks.parse(callbacks.INBOUND, raw(wrapped))
    assert fields == {
        "from": "13125550199", "to": "12065550100", "body": " Stop ", "timestamp": None,
        "inbound_id": ID,
    }  # fmt: skip
    flat = callbacks.parse(callbacks.INBOUND, raw(attributes))
    assert flat["inbound_id"].startswith("sha256-")
    assert flat["inbound_id"] == callbacks.parse(callbacks.INBOUND, raw(attributes))["inbound_id"]


def test_the_documented_flat_inbound_example_is_read() -> None:
    example = {"to": "12066418000", "body": "Hello there from Flowroute!",
               "from": "18553569768", "id": "mdr1-febb118b9b034338adfc662a8c02fd88"}  # fmt: skip
    fields = callbacks.parse(callbacks.INBOUND, raw(example))
    assert (fields["inbound_id"], fields["from"]) == (example["id"], "18553569768")


@pytest.mark.parametrize(
    "attributes",
    [
        {"from": "nope", "to": "12065550100", "body": "hi"},
        {"from": "13125550199", "to": "12065550100", "body": 5},
        {"from": "13125550199", "to": "12065550100", "body": "hi", "direction": "outbound"},
    ],
)
def test_malformed_inbound_messages_are_refused(attributes: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        callbacks.parse(callbacks.INBOUND, raw({"id": ID, **attributes}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05T15:00:01Z", datetime(2026, 1, 5, 15, 0, 1, tzinfo=UTC)),
        ("2026-01-05T15:00:01.12Z", datetime(2026, 1, 5, 15, 0, 1, 120000, tzinfo=UTC)),
        ("2026-01-05T15:00:01.1234567+00:00", datetime(2026, 1, 5, 15, 0, 1, 123456, tzinfo=UTC)),
        ("2026-01-05 15:00:01", datetime(2026, 1, 5, 15, 0, 1, tzinfo=UTC)),
        ("yesterday", None),
        (12, None),
    ],
)
def test_timestamps_with_any_number_of_fractional_digits(text: Any, expected: Any) -> None:
    assert callbacks.timestamp(text) == expected
