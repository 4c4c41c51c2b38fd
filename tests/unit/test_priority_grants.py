"""A grant carries the highest priority its user may ask for; intake lowers anything higher."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.dispatch.dispatcher import Dispatcher
from jobs.errors import InputError
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from jobs.rules import intake
from tests.unit.fakes import OTHER_SENDER, SENDER
from tests.unit.helpers import outbox, submit

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def admitted(priority: int | None) -> intake.Admission:
    doc = {"user": "alice", "to": "13125550199", "body": "hi", "priority": priority}
    return intake.admit({k: v for k, v in doc.items() if v is not None}, NOW)


def test_a_priority_above_the_grant_is_lowered_and_the_requested_one_kept() -> None:
    clamped = intake.clamp_priority(admitted(90), 20)
    assert (clamped.fields["priority"], clamped.fields["priority_requested"]) == (20, 90)


def test_a_priority_within_the_grant_is_left_alone() -> None:
    for requested in (None, -5, 0, 20):
        admission = admitted(requested)
        assert intake.clamp_priority(admission, 20) == admission


def test_a_grant_without_a_valid_max_priority_allows_zero() -> None:
    for grant in ({}, {"max_priority": "100"}, {"max_priority": 101}, {"max_priority": True}):
        assert intake.grant_priority(grant) == 0
    assert intake.grant_priority({"max_priority": 70}) == 70


def test_a_user_s_max_priority_is_the_highest_of_its_grants(directory: Directory) -> None:
    assert directory.max_priority("alice") == 0
    directory.grant("alice", SENDER, max_priority=30)
    directory.grant("alice", OTHER_SENDER, max_priority=10)
    assert directory.max_priority("alice") == 30
    assert directory.max_priority("nobody") == 0
    with pytest.raises(InputError):
        directory.grant("alice", SENDER, max_priority=500)


def test_intake_lowers_a_priority_the_user_was_not_granted(
    dispatcher: Dispatcher, store: OutboxStore, directory: Directory
) -> None:
    directory.grant("alice", SENDER, max_priority=5)
    loud = submit(store, priority=100)
    quiet = submit(store, priority=-3)

    dispatcher.admit()

    assert (outbox(store, loud)["priority"], outbox(store, loud)["priority_requested"]) == (5, 100)
    assert outbox(store, quiet)["priority"] == -3
