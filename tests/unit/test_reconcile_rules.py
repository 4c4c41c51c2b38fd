"""In-doubt sends: the search window, what matches, and when absence is proof."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.rules import reconcile

T = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
SKEW, TIMEOUT = timedelta(seconds=120), timedelta(seconds=10)
SOURCE = "12065550100"
SPAN = reconcile.Window(T - SKEW, T + timedelta(seconds=5) + SKEW)


def record(**changes: Any) -> dict[str, Any]:
    fields = {"id": "mdr2-1", "direction": "outbound", "to": "13125550199", "from": SOURCE,
              "body": "hello", "timestamp": "2026-01-05T15:00:02.25Z"}  # fmt: skip
    return {**fields, **changes}


def test_the_window_spans_every_in_doubt_request_widened_by_the_skew() -> None:
    span = reconcile.window(
        [(T, T + timedelta(seconds=5)), (T + timedelta(minutes=1), None)], T, SKEW, TIMEOUT
    )
    assert span == reconcile.Window(T - SKEW, T + timedelta(minutes=1) + TIMEOUT + SKEW)


def test_without_tickets_the_window_ends_at_the_fallback_time() -> None:
    span = reconcile.window([], T, SKEW, TIMEOUT)
    assert span == reconcile.Window(T - TIMEOUT - SKEW, T + SKEW)


def test_our_message_matches() -> None:
    assert reconcile.matches(
        record(to="+13125550199"), "13125550199", {"12065550100"}, "hello", SPAN
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"direction": "inbound"},
        {"to": "13125550100"},
        {"from": "12065550999"},
        {"body": "hello!"},
        {"timestamp": "2026-01-05T14:00:00Z"},
        {"timestamp": None},
    ],
)
def test_anything_else_does_not(changes: dict[str, Any]) -> None:
    assert not reconcile.matches(record(**changes), "13125550199", {"12065550100"}, "hello", SPAN)


def test_found_absent_or_wait() -> None:
    assert reconcile.decide(["mdr2-1"], SPAN, T) == reconcile.FOUND
    assert reconcile.decide([], SPAN, SPAN.end) == reconcile.WAIT
    after = SPAN.end + reconcile.VISIBILITY
    assert reconcile.decide([], SPAN, after) == reconcile.ABSENT
