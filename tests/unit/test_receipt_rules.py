"""What a carrier status means and how receipts move a message: only forward, only once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobs.model import Reason, State
from jobs.rules import receipts

T = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def receipt(status: str, level: int = 2, code: Any = None, second: int = 0) -> dict[str, Any]:
    return {"provider_id": "mdr2-1", "level": level, "status": status, "status_code": code,
            "description": "why", "timestamp": T.replace(second=second)}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("delivered", None, State.DELIVERED),
        ("Delivery Success", "1000", State.DELIVERED),
        ("delivery failure", "1201", State.UNDELIVERED),
        ("SMSC reject", None, State.UNDELIVERED),
        ("expired", None, State.EXPIRED),
        ("smsc submit", None, None),
        ("message buffered", "1003", None),
        ("something new", None, None),
        ("message buffered", "1110", State.UNDELIVERED),
    ],
)
def test_carrier_statuses(status: str, code: str | None, expected: State | None) -> None:
    assert receipts.verdict(status, code) is expected


def test_a_final_receipt_moves_sent_to_its_state_and_keeps_the_receipt() -> None:
    change = receipts.apply("sent", [], receipt("delivered"))
    assert change is not None
    assert change.state is State.DELIVERED and change.problem is None
    assert change.receipts == [receipt("delivered")]


def test_undelivered_says_what_the_carrier_said() -> None:
    change = receipts.apply("sent", [], receipt("delivery failure", code="1201"))
    assert change is not None and change.problem is not None
    assert change.problem.code is Reason.CARRIER
    assert "delivery failure" in change.problem.detail and "1201" in change.problem.detail


def test_a_repeated_receipt_writes_nothing() -> None:
    assert receipts.apply("delivered", [receipt("delivered")], receipt("delivered")) is None


@pytest.mark.parametrize("state", ["delivered", "undelivered", "expired", "queued", "unknown"])
def test_only_sent_moves_later_receipts_are_kept_without_moving(state: str) -> None:
    change = receipts.apply(state, [], receipt("delivery failure", second=9))
    assert change is not None and change.state is None
    assert len(change.receipts) == 1


def test_a_level_1_after_the_final_one_does_not_move_it_back() -> None:
    change = receipts.apply("delivered", [receipt("delivered")], receipt("smsc submit", level=1))
    assert change is not None and change.state is None


def test_unknown_statuses_are_kept_and_not_final() -> None:
    change = receipts.apply("sent", [], receipt("carrier is thinking"))
    assert change is not None and change.state is None
    assert change.receipts[0]["status"] == "carrier is thinking"


def test_the_kept_list_is_bounded() -> None:
    kept = [receipt("smsc submit", level=1, second=s) for s in range(30)]
    change = receipts.apply("sent", kept, receipt("delivered"))
    assert change is not None and len(change.receipts) == receipts.MAX_KEPT
    assert change.receipts[-1]["status"] == "delivered"
