"""Vetting: may this document be sent, and from which number. One path for single messages,
broadcast requests and the messages a broadcast fans out to: intake, signature, then policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from jobs.model import DEFAULT_MAX_SEGMENTS, Problem, Reason, State
from jobs.rules import intake, optin, policy, replay, replies


class Grants(Protocol):
    """The directory lookups policy needs (the MongoDB `Directory` is one)."""

    def sources_for(self, user: str) -> list[str]: ...

    def recipient(self, number: str) -> Mapping[str, Any] | None: ...

    def is_source(self, number: str) -> bool: ...


class SignatureCheck(Protocol):
    """Who signed a document (`jobs.keys.Signatures` is one); None when the signature holds."""

    def check(self, doc: Mapping[str, Any]) -> Problem | None: ...


@dataclass(frozen=True)
class Vetted:
    """Vetting's answer: the checked fields and the number to send from, or the problem and the
    state it leads to."""

    fields: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    problem: Problem | None = None
    state: State = State.REJECTED
    broadcast: bool = False

    @property
    def to(self) -> str:
        return str(self.fields["to"])


def vet(
    doc: Mapping[str, Any],
    now: datetime,
    grants: Grants,
    signatures: SignatureCheck | None = None,
    *,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    max_attempts: int | None = None,
) -> Vetted:
    """Check a claimed document; the first failure is the problem.

    A message needs its sender's grant of the number and its recipient's consent; a broadcast
    request (routed on `audience`, which is signed) needs the grant only, since each of its
    messages is vetted again when it is claimed. A message claimed more than `max_attempts`
    times fails.
    """
    admission = intake.admit(doc, now, max_segments)
    broadcast = admission.broadcast
    problem = admission.problem
    if problem is None and signatures is not None:
        problem = signatures.check(doc)
    # A broadcast's message must carry the id of its signed campaign and number.
    problem = problem or replay.child_problem(doc)
    if problem is not None:
        return Vetted(problem=problem, broadcast=broadcast)
    if not broadcast and max_attempts is not None and int(doc.get("attempts", 0)) > max_attempts:
        problem = Problem(Reason.MAX_ATTEMPTS, f"claimed {doc.get('attempts')} times")
        return Vetted(problem=problem, state=State.FAILED)
    fields = admission.fields
    user, requested = fields["user"], fields.get("from")
    sources = grants.sources_for(user)
    if broadcast:
        decision = policy.choose_source(user, requested, sources)
    elif replies.is_reply(doc):
        # The daemon's answer to a STOP, HELP or START (see jobs/rules/replies.py).
        source_is_ours = isinstance(requested, str) and grants.is_source(requested)
        decision = replies.decide(doc, grants.recipient(fields["to"]), source_is_ours)
    elif optin.is_optin(doc):
        # The daemon's opt-in texts: the sign-up code, the YES prompt, the welcome.
        source_is_ours = isinstance(requested, str) and grants.is_source(requested)
        decision = optin.decide(doc, grants.recipient(fields["to"]), source_is_ours)
    else:
        to = fields["to"]
        decision = policy.decide(user, to, requested, sources, grants.recipient(to))
    if decision.problem is not None or decision.source is None:
        assert decision.problem is not None
        return Vetted(fields=fields, problem=decision.problem, broadcast=broadcast)
    return Vetted(fields=fields, source=decision.source, broadcast=broadcast)
