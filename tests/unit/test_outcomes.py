"""Outcomes: what a message becomes after a provider error or a worker that stopped holding it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.errors import (
    AccountError,
    NoProviderIdError,
    OptedOutError,
    PermanentError,
    ProviderError,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
)
from jobs.model import Problem, Reason, State
from jobs.rules.outcomes import BACKOFF_BASE, BACKOFF_CAP, after_error, after_lease_expired, backoff

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
MAX = 5


def lowest() -> float:
    return 0.0


def highest() -> float:
    return 1.0


def ceiling(attempt: int) -> timedelta:
    seconds = BACKOFF_BASE.total_seconds() * 2 ** max(attempt - 1, 0)
    return min(BACKOFF_CAP, timedelta(seconds=min(seconds, BACKOFF_CAP.total_seconds())))


def test_backoff_doubles_with_each_attempt() -> None:
    highs = [backoff(n, rand=highest) for n in range(1, 6)]

    assert highs == [timedelta(seconds=s) for s in (5, 10, 20, 40, 80)]


def test_backoff_jitter_spans_half_to_all_of_the_ceiling() -> None:
    assert backoff(3, rand=lowest) == timedelta(seconds=10)
    assert backoff(3, rand=lambda: 0.5) == timedelta(seconds=15)
    assert backoff(3, rand=highest) == timedelta(seconds=20)


def test_backoff_of_attempt_zero_is_that_of_the_first() -> None:
    assert backoff(0, rand=highest) == backoff(1, rand=highest) == BACKOFF_BASE


@pytest.mark.parametrize("attempt", [9, 10, 45, 100, 10_000])
def test_backoff_caps_at_fifteen_minutes(attempt: int) -> None:
    assert backoff(attempt, rand=highest) == BACKOFF_CAP
    assert backoff(attempt, rand=lowest) == BACKOFF_CAP / 2


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=500), st.floats(min_value=0.0, max_value=1.0))
def test_backoff_stays_within_half_and_all_of_its_ceiling(attempt: int, jitter: float) -> None:
    delay = backoff(attempt, rand=lambda: jitter)

    assert ceiling(attempt) / 2 <= delay <= ceiling(attempt)


def test_429_never_burns_an_attempt() -> None:
    throttled = ThrottledError("429", "Too Many Requests: slow down", 429)

    outcome = after_error(throttled, attempts=MAX, max_attempts=MAX, now=NOW, rand=highest)

    assert outcome.state is State.QUEUED
    assert outcome.refund is True
    assert outcome.due_at == NOW + backoff(MAX, rand=highest)
    assert outcome.problem == Problem(Reason.PROVIDER, "429: Too Many Requests: slow down", "429")


@pytest.mark.parametrize(
    "error",
    [
        RetryableError("500", "Internal Server Error: try later", 500),
        RetryableError("503", "Service Unavailable: maintenance", 503),
        RetryableError("connect_error", "could not connect to Flowroute"),
    ],
    ids=lambda e: e.code,
)
def test_retryable_error_is_queued_with_backoff_and_counts(error: ProviderError) -> None:
    outcome = after_error(error, attempts=2, max_attempts=MAX, now=NOW, rand=lowest)

    assert outcome.state is State.QUEUED
    assert outcome.refund is False
    assert outcome.due_at == NOW + timedelta(seconds=5)
    assert outcome.problem is not None
    assert outcome.problem.code is Reason.PROVIDER
    assert outcome.problem.detail.startswith(error.code + ": ")


@pytest.mark.parametrize("status", [500, 503])
def test_retryable_error_on_the_last_attempt_fails(status: int) -> None:
    error = RetryableError(str(status), "down", status)

    outcome = after_error(error, attempts=MAX, max_attempts=MAX, now=NOW)

    assert outcome.state is State.FAILED
    assert outcome.due_at is None
    assert outcome.refund is False
    assert outcome.problem == Problem(Reason.PROVIDER, f"{status}: down", str(status))


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        (403, "Forbidden: recipient is blocked", None),
        (422, {"to": ["is not a valid number"]}, "422: {'to': ['is not a valid number']}"),
    ],
)
def test_other_4xx_fails_with_flowroutes_detail(
    status: int, detail: Any, expected: str | None
) -> None:
    outcome = after_error(PermanentError(str(status), detail, status), 1, MAX, NOW)

    assert outcome.state is State.FAILED
    assert outcome.opted_out is False
    problem = Problem(Reason.PROVIDER, expected or f"{status}: {detail}", str(status))
    assert outcome.problem == problem


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (401, "Unauthorized: missing or wrong API credentials"),
        (403, "Forbidden: the account does not own the 'from' number 12065550100"),
    ],
)
def test_an_account_refusal_holds_the_message_with_its_attempt_refunded(
    status: int, detail: str
) -> None:
    outcome = after_error(AccountError(str(status), detail, status), MAX, MAX, NOW)

    assert (outcome.state, outcome.refund, outcome.hold) == (State.QUEUED, True, True)
    assert outcome.problem == Problem(Reason.ACCOUNT_HELD, f"{status}: {detail}", str(status))


def test_an_accepted_request_without_an_id_is_unknown_with_its_own_reason() -> None:
    error = NoProviderIdError("202", "Flowroute accepted the message without a message id")

    outcome = after_error(error, 1, MAX, NOW)

    assert outcome.state is State.UNKNOWN
    assert outcome.problem is not None
    assert (outcome.problem.code, outcome.problem.provider_code) == (Reason.NO_PROVIDER_ID, "202")


def test_1110_fails_and_opts_the_recipient_out() -> None:
    error = OptedOutError("1110", "recipient 13125550199 has opted out", 400)

    outcome = after_error(error, 1, MAX, NOW)

    assert outcome.state is State.FAILED
    assert outcome.opted_out is True
    assert outcome.due_at is None
    detail = "1110: recipient 13125550199 has opted out"
    assert outcome.problem == Problem(Reason.OPTED_OUT, detail, "1110")


@pytest.mark.parametrize("attempts", [1, MAX])
def test_unknown_outcome_is_unknown_and_never_retried(attempts: int) -> None:
    error = UnknownOutcomeError("timeout", "no answer within 10 s")

    outcome = after_error(error, attempts, MAX, NOW)

    assert outcome.state is State.UNKNOWN
    assert outcome.due_at is None
    assert outcome.refund is False
    assert outcome.problem == Problem(Reason.TIMEOUT, "timeout: no answer within 10 s")


def test_error_without_detail_records_its_code_alone() -> None:
    outcome = after_error(PermanentError("404"), 1, MAX, NOW)

    assert outcome.problem == Problem(Reason.PROVIDER, "404")


@pytest.mark.parametrize("attempts", [1, MAX, MAX + 3])
def test_lease_lost_while_in_flight_is_unknown(attempts: int) -> None:
    outcome = after_lease_expired({"in_flight": True, "attempts": attempts}, MAX, NOW)

    assert outcome.state is State.UNKNOWN
    assert outcome.due_at is None
    assert outcome.problem is not None
    assert outcome.problem.code is Reason.LEASE_EXPIRED


@pytest.mark.parametrize("doc", [{"in_flight": False, "attempts": 1}, {"attempts": MAX - 1}, {}])
def test_lease_lost_before_sending_is_queued_again_now(doc: dict[str, Any]) -> None:
    outcome = after_lease_expired(doc, MAX, NOW)

    assert outcome.state is State.QUEUED
    assert outcome.due_at == NOW
    assert outcome.problem is not None
    assert outcome.problem.code is Reason.LEASE_EXPIRED


def test_lease_lost_with_every_attempt_used_fails() -> None:
    outcome = after_lease_expired({"in_flight": False, "attempts": MAX}, MAX, NOW)

    assert outcome.state is State.FAILED
    assert outcome.due_at is None
    assert outcome.problem is not None
    assert outcome.problem.code is Reason.MAX_ATTEMPTS
    assert str(MAX) in outcome.problem.detail
