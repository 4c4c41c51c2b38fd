"""Fair shares: replies first, then priority, and at one priority users and campaigns in turn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobs.rules import replies
from jobs.rules.fairness import take_turns

START = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def message(name: str, seconds: int, **fields: Any) -> dict[str, Any]:
    return {
        "_id": name,
        "user": "alice",
        "priority": 0,
        "due_at": START + timedelta(seconds=seconds),
        **fields,
    }


def names(docs: list[dict[str, Any]]) -> list[str]:
    return [str(doc["_id"]) for doc in docs]


def test_a_broadcast_and_a_single_message_take_turns() -> None:
    broadcast = [message(f"b{i}", i, campaign="news") for i in range(4)]
    single = message("bob", 10, user="bob")

    assert names(take_turns([*broadcast, single])) == ["b0", "bob", "b1", "b2", "b3"]


def test_two_campaigns_of_one_user_alternate_in_their_own_due_order() -> None:
    one = [message(f"one{i}", i, campaign="one") for i in range(3)]
    two = [message(f"two{i}", 5 + i, campaign="two") for i in range(3)]

    order = names(take_turns([*two, *one]))

    assert order == ["one0", "two0", "one1", "two1", "one2", "two2"]


def test_higher_priority_goes_first_and_turns_are_taken_within_a_priority() -> None:
    docs = [
        message("low", 0, priority=-5),
        message("a", 3, priority=5),
        message("b", 4, priority=5, user="bob"),
        message("a2", 5, priority=5),
    ]

    assert names(take_turns(docs)) == ["a", "b", "a2", "low"]


def test_replies_go_first_even_behind_the_highest_priority() -> None:
    docs = [
        message("urgent", 0, priority=100),
        message("reply", 9, user=replies.USER, campaign="reply:stop:in-1"),
    ]

    assert names(take_turns(docs)) == ["reply", "urgent"]
