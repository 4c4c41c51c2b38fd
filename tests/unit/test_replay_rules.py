"""The replay rules: a broadcast message's id, the signed send_at, the daemon's fields and the
fan-out seal, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.model import Reason
from jobs.rules import intake, replay

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KEY = "ab" * 32
CHILD = {"_id": "c1:13125550199", "campaign": "c1", "to": "13125550199"}


def test_a_broadcast_message_with_its_own_id_passes() -> None:
    assert replay.child_problem(CHILD) is None
    # A number stored in another spelling makes the id; it is the same person.
    assert replay.child_problem({**CHILD, "_id": "c1:+13125550199"}) is None
    assert replay.child_problem({"_id": "x", "to": "13125550199"}) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"_id": "c1:13125550199:again"},
        {"_id": "c2:13125550199"},
        {"_id": "c1:13125550142"},
        {"_id": "c1"},
        {"_id": 7},
        {"campaign": 7},
        {"to": None},
    ],
    ids=repr,
)
def test_a_broadcast_message_whose_id_does_not_match_its_fields_is_a_replay(
    changes: dict[str, Any],
) -> None:
    problem = replay.child_problem({**CHILD, **changes})

    assert problem is not None
    assert problem.code is Reason.REPLAY


def test_a_signed_send_at_still_ahead_holds_the_message_back() -> None:
    ahead = NOW + timedelta(minutes=5)

    assert replay.not_before({"send_at": ahead}, NOW) == ahead
    assert replay.not_before({"send_at": NOW}, NOW) is None
    assert replay.not_before({"send_at": "soon"}, NOW) is None
    assert replay.not_before({}, NOW) is None
    assert replay.early_problem(ahead).code is Reason.NOT_DUE


def test_intake_names_the_daemon_fields_a_producer_wrote_and_refuses_a_campaign() -> None:
    doc = {"user": "alice", "to": "13125550199", "body": "hi", "fanout_after": "1", "rev": 9}

    admitted = replay.guard(doc, intake.admit(doc, NOW))
    posed = replay.guard({**doc, "campaign": "c1"}, intake.admit(doc, NOW))

    assert admitted.problem is None
    assert admitted.strip == ("fanout_after", "rev")
    assert posed.problem is not None
    assert posed.problem.code is Reason.INVALID_DOCUMENT


def test_fanout_progress_is_trusted_only_under_the_daemons_seal() -> None:
    seal = replay.seal(KEY, "c1", "13125550199", 40)

    assert replay.sealed(KEY, "c1", "13125550199", 40, seal)
    assert not replay.sealed(KEY, "c1", "13125550199", 41, seal)
    assert not replay.sealed(KEY, "c2", "13125550199", 40, seal)
    assert not replay.sealed("cd" * 32, "c1", "13125550199", 40, seal)
    assert not replay.sealed(KEY, "c1", "13125550199", True, seal)
    assert not replay.sealed(KEY, "c1", "13125550199", 40, None)
    assert not replay.sealed(KEY, "c1", "13125550199", 40, "\u00e9" * 64)
