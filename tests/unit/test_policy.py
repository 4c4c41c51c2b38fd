"""Policy: who may send from which number, and which recipients may be texted."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.model import Reason
from jobs.rules.policy import Decision, choose_source, decide, recipient_problem

SENDER = "12065550100"
OTHER = "12065550101"
TO = "13125550199"
VERIFIED: dict[str, Any] = {"phone": TO, "verified": True}


def test_user_without_grants_is_not_authorised() -> None:
    decision = choose_source("mallory", None, [])

    assert decision.source is None
    assert decision.problem is not None
    assert decision.problem.code is Reason.NOT_AUTHORIZED
    assert "mallory" in decision.problem.detail


def test_first_grant_is_the_default_source() -> None:
    assert choose_source("alice", None, [SENDER, OTHER]) == Decision(source=SENDER)


def test_requested_source_is_used_when_granted() -> None:
    assert choose_source("alice", OTHER, [SENDER, OTHER]) == Decision(source=OTHER)


def test_requested_source_not_granted_is_refused() -> None:
    decision = choose_source("alice", "12065550199", [SENDER])

    assert decision.source is None
    assert decision.problem is not None
    assert decision.problem.code is Reason.SOURCE_NOT_GRANTED
    assert "12065550199" in decision.problem.detail


def test_verified_recipient_has_no_problem() -> None:
    assert recipient_problem(TO, VERIFIED) is None


@pytest.mark.parametrize(
    "recipient",
    [
        None,
        {"phone": TO},
        {"phone": TO, "verified": False},
        {"phone": TO, "verified": "yes"},
        {"phone": TO, "verified": 1},
    ],
    ids=repr,
)
def test_recipient_without_verified_consent_is_not_verified(
    recipient: dict[str, Any] | None,
) -> None:
    problem = recipient_problem(TO, recipient)

    assert problem is not None
    assert problem.code is Reason.NOT_VERIFIED
    assert TO in problem.detail


def test_opt_out_wins_over_verification() -> None:
    recipient = {**VERIFIED, "opted_out": {"reason": "STOP"}}

    problem = recipient_problem(TO, recipient)

    assert problem is not None
    assert problem.code is Reason.OPTED_OUT


def test_decide_allows_a_granted_user_to_a_verified_recipient() -> None:
    assert decide("alice", TO, OTHER, [SENDER, OTHER], VERIFIED) == Decision(source=OTHER)


@pytest.mark.parametrize(
    ("requested", "grants", "recipient", "reason"),
    [
        (None, [], None, Reason.NOT_AUTHORIZED),
        (None, [], VERIFIED, Reason.NOT_AUTHORIZED),
        (OTHER, [SENDER], None, Reason.SOURCE_NOT_GRANTED),
        (None, [SENDER], None, Reason.NOT_VERIFIED),
        (SENDER, [SENDER], {**VERIFIED, "opted_out": True}, Reason.OPTED_OUT),
    ],
)
def test_decide_reports_the_first_failing_check(
    requested: str | None,
    grants: list[str],
    recipient: dict[str, Any] | None,
    reason: Reason,
) -> None:
    decision = decide("alice", TO, requested, grants, recipient)

    assert decision.source is None
    assert decision.problem is not None
    assert decision.problem.code is reason
