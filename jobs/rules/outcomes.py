"""What a message becomes after an attempt, a provider error or a lost worker. Pure functions."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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

BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=15)


@dataclass(frozen=True)
class Outcome:
    """The next state of a claimed message; `due_at` is set when it goes back to the queue."""

    state: State
    problem: Problem | None = None
    due_at: datetime | None = None
    refund: bool = False
    opted_out: bool = False
    hold: bool = False  # the account is refused: stop sending until a probe succeeds


def backoff(
    attempt: int,
    base: timedelta = BACKOFF_BASE,
    cap: timedelta = BACKOFF_CAP,
    rand: Callable[[], float] = random.random,
) -> timedelta:
    """Exponential backoff with equal jitter: between half and all of min(cap, base * 2**(n-1))."""
    # Capping the exponent keeps base * 2**n far from timedelta's limit for any attempt count.
    ceiling = min(cap, base * (1 << min(max(attempt - 1, 0), 32)))
    return ceiling / 2 + (ceiling / 2) * rand()


def provider_problem(error: ProviderError) -> Problem:
    """The status record of a provider error: Flowroute's code and detail, as text."""
    reason = Reason.TIMEOUT if isinstance(error, UnknownOutcomeError) else Reason.PROVIDER
    if isinstance(error, OptedOutError):
        reason = Reason.OPTED_OUT
    elif isinstance(error, NoProviderIdError):
        reason = Reason.NO_PROVIDER_ID
    elif isinstance(error, AccountError):
        reason = Reason.ACCOUNT_HELD
    detail = error.detail if isinstance(error.detail, str) else repr(error.detail)
    text = f"{error.code}: {detail}" if error.detail is not None else error.code
    answered = error.status is not None or isinstance(error, NoProviderIdError)
    return Problem(reason, text, error.code if answered else None)


def after_error(
    error: ProviderError,
    attempts: int,
    max_attempts: int,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> Outcome:
    """Map a provider error to the next state.

    A 429 is our pacing, not the message's fault: it waits and gets its attempt back. Other
    retryable errors count; the last allowed attempt fails. An answer that never came is unknown.
    """
    problem = provider_problem(error)
    if isinstance(error, AccountError):
        # Not this message's fault: it waits, attempt refunded, until the account works again.
        return Outcome(State.QUEUED, problem, now, refund=True, hold=True)
    if isinstance(error, ThrottledError):
        return Outcome(State.QUEUED, problem, now + backoff(attempts, rand=rand), refund=True)
    if isinstance(error, RetryableError):
        if attempts >= max_attempts:
            return Outcome(State.FAILED, problem)
        return Outcome(State.QUEUED, problem, now + backoff(attempts, rand=rand))
    if isinstance(error, UnknownOutcomeError):
        return Outcome(State.UNKNOWN, problem)
    if isinstance(error, OptedOutError):
        return Outcome(State.FAILED, problem, opted_out=True)
    if isinstance(error, PermanentError):
        return Outcome(State.FAILED, problem)
    return Outcome(State.FAILED, problem)


def after_lease_expired(doc: Mapping[str, Any], max_attempts: int, now: datetime) -> Outcome:
    """A worker died holding `doc`. If its request may have gone out, the outcome is unknown;
    otherwise the message is queued again, unless it has already used every attempt."""
    if doc.get("in_flight"):
        detail = "the worker stopped after the request may have reached Flowroute"
        return Outcome(State.UNKNOWN, Problem(Reason.LEASE_EXPIRED, detail))
    if int(doc.get("attempts", 0)) >= max_attempts:
        detail = f"workers stopped while holding it {doc.get('attempts')} times"
        return Outcome(State.FAILED, Problem(Reason.MAX_ATTEMPTS, detail))
    detail = "the worker stopped before sending; queued again"
    return Outcome(State.QUEUED, Problem(Reason.LEASE_EXPIRED, detail), due_at=now)
