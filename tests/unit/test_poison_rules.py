"""Which refusals a document causes (and is set aside for), and which stop the step."""

from __future__ import annotations

import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure

from jobs.errors import DuplicateKey, StoreRefused, StoreUnavailable, document_fault, refusal
from jobs.mongo.poison import caused_by_document, minimal_copy, refused_for_itself


@pytest.mark.parametrize(
    "code",
    [2, 14, 17419, 10334, 285999133],  # overflow, type mismatch, sizes (DocumentDB's own too)
)
def test_a_refusal_of_the_document_s_content_is_the_document_s_fault(code: int) -> None:
    refused = StoreRefused("OperationFailure: bad", code, {"errmsg": "bad"})
    assert document_fault(refused)
    assert caused_by_document(OperationFailure("bad", code))
    assert refused_for_itself({"code": code, "errmsg": "bad"})


@pytest.mark.parametrize("code", [13, 18, 11000, 91, 189, 10107, 50, 112, None])
def test_permissions_elections_timeouts_and_duplicates_are_not(code: int | None) -> None:
    assert not document_fault(StoreRefused("refused", code, {}))
    if code is not None:
        assert not caused_by_document(OperationFailure("refused", code))


def test_outages_and_duplicates_are_never_set_aside() -> None:
    assert not document_fault(StoreUnavailable("ServerSelectionTimeoutError"))
    assert not document_fault(DuplicateKey("DuplicateKeyError", 11000, {}))
    assert not caused_by_document(DuplicateKeyError("dup", 11000))


def test_the_reason_kept_is_the_server_s_words_and_short() -> None:
    words = "Failed to apply $inc operations to current value ((NumberLong)9223372036854775807)"
    reason = refusal(StoreRefused("x", 2, {"errmsg": words + " " * 5 + "y" * 1000}))
    assert reason.startswith("the server refused it (code 2): Failed to apply $inc")
    assert len(reason) <= 300


def test_a_minimal_status_copy_keeps_only_small_fields_of_the_right_type() -> None:
    copy = minimal_copy({"state": "rejected", "rev": 3, "error": {"code": "x"}, "to": "y" * 10})
    assert copy["$set"] == {"state": "rejected", "rev": 3, "error": {"code": "x"}}
    assert "to" in copy["$unset"]
    assert "state" not in minimal_copy({"state": ["queued"]})["$set"]
