"""Keywords a recipient may text us: STOP, HELP and START, in their usual spellings. Pure."""

from __future__ import annotations

import re
from enum import StrEnum


class Keyword(StrEnum):
    STOP = "stop"
    HELP = "help"
    START = "start"


STOP_WORDS = frozenset(
    {"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "opt out", "optout",
     "opt-out", "revoke", "stop please", "please stop", "unsub", "remove"}
)  # fmt: skip
HELP_WORDS = frozenset({"help", "info", "information"})
START_WORDS = frozenset({"start", "unstop", "yes", "subscribe", "opt in", "optin", "opt-in"})
# Punctuation around the word ("Stop.", "STOP!!", "'help'") is noise, not a different word.
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def normalize(text: str) -> str:
    """Lower case, inner spaces collapsed, surrounding spaces and punctuation dropped."""
    return _EDGES.sub("", " ".join(text.casefold().split()))


def classify(text: str) -> Keyword | None:
    """The keyword a whole inbound text is, or None for any other text."""
    word = normalize(text)
    if word in STOP_WORDS:
        return Keyword.STOP
    if word in HELP_WORDS:
        return Keyword.HELP
    if word in START_WORDS:
        return Keyword.START
    return None
