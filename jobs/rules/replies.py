"""Replies to STOP, HELP and START: how they are named, and when one may go out. Pure.

A reply is an ordinary outbox message from the daemon, signed with its key, whose `campaign`
names the keyword and the inbound message it answers (`reply:stop:<inbound id>`). The signature
covers the campaign, so no one without the key can make a message pass for a reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.model import Problem, Reason
from jobs.rules import made
from jobs.rules.keywords import Keyword
from jobs.rules.policy import Decision

PREFIX = "reply:"
USER = made.USER


def campaign(keyword: Keyword, inbound_id: str) -> str:
    return f"{PREFIX}{keyword.value}:{inbound_id}"


def message_id(keyword: Keyword, inbound_id: str, to: str) -> str:
    """One reply per inbound message: a resent callback collides with the reply already made.
    Like a broadcast's messages, its id is its campaign and its number (see jobs/rules/replay)."""
    return f"{campaign(keyword, inbound_id)}:{to}"


def parse(value: Any) -> tuple[Keyword, str] | None:
    """The keyword and inbound id of a reply's campaign, or None if it is not a reply's."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    keyword, _, inbound_id = value[len(PREFIX) :].partition(":")
    if keyword not in {k.value for k in Keyword} or not inbound_id:
        return None
    return Keyword(keyword), inbound_id


def is_reply(doc: Mapping[str, Any]) -> bool:
    return parse(doc.get("campaign")) is not None


def decide(
    doc: Mapping[str, Any], recipient: Mapping[str, Any] | None, source_is_ours: bool
) -> Decision:
    """May this reply go out? From one of our numbers only; never to an opted-out number,
    except the single confirmation of that very opt-out (the inbound id it records)."""
    parsed = parse(doc.get("campaign"))
    source = doc.get("from")
    if parsed is None or not isinstance(source, str) or doc.get("user") != USER:
        return Decision(problem=Problem(Reason.INVALID_DOCUMENT, "not a well-formed reply"))
    if not source_is_ours:
        detail = f"{source} is not a number any sender was granted"
        return Decision(problem=Problem(Reason.SOURCE_NOT_GRANTED, detail))
    keyword, inbound_id = parsed
    opted_out = recipient.get("opted_out") if recipient is not None else None
    if keyword is Keyword.STOP:
        if isinstance(opted_out, Mapping) and opted_out.get("inbound_id") == inbound_id:
            return Decision(source=source)
        detail = "the opt-out this confirms is no longer the recipient's latest"
        return Decision(problem=Problem(Reason.OPTED_OUT, detail))
    if opted_out:
        return Decision(problem=Problem(Reason.OPTED_OUT, f"{doc.get('to')} has opted out"))
    return Decision(source=source)
