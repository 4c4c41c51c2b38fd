"""Fair shares: the order in which due messages are claimed. Pure.

Replies (the daemon's own answers to STOP and HELP) go first, on a lane of their own, whatever
priority producers use. Then the highest priority goes first; at equal priority, the senders
take turns: one message of each user and campaign in turn, each in its own due order, so one
big broadcast cannot make another user's message wait behind all of its recipients.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, TypeVar

from jobs.rules import replies

Doc = Mapping[str, Any]
D = TypeVar("D", bound=Mapping[str, Any])
_NEVER = datetime.max.replace(tzinfo=UTC)


def is_reply(doc: Doc) -> bool:
    """Whether a claim candidate belongs on the reply lane (vetting checks its signature)."""
    return doc.get("user") == replies.USER


def share(doc: Doc) -> tuple[str, str]:
    """Whose turn a message counts against: its user and its campaign."""
    return str(doc.get("user")), str(doc.get("campaign") or "")


def _priority(doc: Doc) -> float:
    value = doc.get("priority")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("-inf")
    return float(value)


def _due(doc: Doc) -> datetime:
    value = doc.get("due_at")
    if not isinstance(value, datetime):
        return _NEVER
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def take_turns(candidates: Sequence[D]) -> list[D]:
    """Candidates in claim order: replies by due time, then by priority, and at one priority
    round-robin across user and campaign, each share in due order, the longest-waiting share
    first in each round."""
    lane = sorted((d for d in candidates if is_reply(d)), key=_due)
    others = (d for d in candidates if not is_reply(d))
    rest = sorted(others, key=lambda d: (-_priority(d), _due(d)))
    ordered = list(lane)
    for _, level in groupby(rest, key=_priority):
        shares: OrderedDict[tuple[str, str], deque[D]] = OrderedDict()
        for doc in level:  # in due order, so shares are met longest-waiting first
            shares.setdefault(share(doc), deque()).append(doc)
        while shares:
            for key in list(shares):
                queue = shares[key]
                ordered.append(queue.popleft())
                if not queue:
                    del shares[key]
    return ordered
