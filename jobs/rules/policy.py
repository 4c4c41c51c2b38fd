"""Policy: may this message be sent, from which number, to this recipient. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.model import Problem, Reason


@dataclass(frozen=True)
class Decision:
    """Either the number to send from, or the problem that forbids sending."""

    source: str | None = None
    problem: Problem | None = None


def recipient_problem(phone: str, recipient: Mapping[str, Any] | None) -> Problem | None:
    """Consent, checked when the message is claimed: verified and not opted out."""
    if recipient is None:
        return Problem(Reason.NOT_VERIFIED, f"{phone} is not a known recipient")
    if recipient.get("opted_out"):
        return Problem(Reason.OPTED_OUT, f"{phone} has opted out")
    if recipient.get("verified") is not True:
        return Problem(Reason.NOT_VERIFIED, f"{phone} has not verified consent")
    return None


def choose_source(user: str, requested: str | None, grants: Sequence[str]) -> Decision:
    """The number `user` sends from: the one requested if granted, else its first grant."""
    if not grants:
        return Decision(problem=Problem(Reason.NOT_AUTHORIZED, f"user {user!r} may not send"))
    if requested is None:
        return Decision(source=grants[0])
    if requested not in grants:
        detail = f"user {user!r} was not granted the number {requested}"
        return Decision(problem=Problem(Reason.SOURCE_NOT_GRANTED, detail))
    return Decision(source=requested)


def decide(
    user: str,
    to: str,
    requested: str | None,
    grants: Sequence[str],
    recipient: Mapping[str, Any] | None,
) -> Decision:
    """Every check a message passes before it is sent; the first failure is the reason."""
    decision = choose_source(user, requested, grants)
    if decision.problem is not None:
        return decision
    problem = recipient_problem(to, recipient)
    return Decision(problem=problem) if problem else decision
