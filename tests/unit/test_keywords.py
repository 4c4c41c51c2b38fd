"""STOP, HELP and START in their usual spellings; anything else is just a text."""

from __future__ import annotations

from collections import Counter

import pytest

from jobs.rules import keywords, optout_rate, replies
from jobs.rules.keywords import Keyword


@pytest.mark.parametrize(
    "text",
    ["STOP", "stop", "  Stop  ", "Stop.", "STOPALL", "stop all", "UNSUBSCRIBE", "Cancel", "END",
     "quit!", "opt out", "OPT-OUT", "Revoke"],
)  # fmt: skip
def test_stop_words(text: str) -> None:
    assert keywords.classify(text) is Keyword.STOP


@pytest.mark.parametrize("text", ["HELP", " help ", "Info", "INFO?"])
def test_help_words(text: str) -> None:
    assert keywords.classify(text) is Keyword.HELP


@pytest.mark.parametrize("text", ["START", "unstop", "Yes", " YES! "])
def test_start_words(text: str) -> None:
    assert keywords.classify(text) is Keyword.START


@pytest.mark.parametrize("text", ["", "   ", "stop by tomorrow", "thanks", "stopp", "helpful"])
def test_other_texts_are_no_keyword(text: str) -> None:
    assert keywords.classify(text) is None


def test_a_reply_campaign_round_trips_and_others_are_not_replies() -> None:
    assert replies.parse(replies.campaign(Keyword.STOP, "mdr2-1")) == (Keyword.STOP, "mdr2-1")
    for value in (None, "campaign-1", "reply:", "reply:maybe:mdr2-1", "reply:stop:", 5):
        assert replies.parse(value) is None


REPLY = {"user": replies.USER, "to": "13125550199", "from": "12065550100",
         "campaign": replies.campaign(Keyword.STOP, "mdr2-1")}  # fmt: skip


def test_a_stop_confirmation_passes_the_opt_out_it_confirms_and_no_other() -> None:
    confirmed = {"opted_out": {"inbound_id": "mdr2-1"}}
    assert replies.decide(REPLY, confirmed, True).source == "12065550100"
    later = {"opted_out": {"inbound_id": "mdr2-2"}}
    assert replies.decide(REPLY, later, True).problem is not None
    assert replies.decide(REPLY, {"verified": True}, True).problem is not None


def test_help_and_start_replies_never_reach_an_opted_out_number() -> None:
    help_reply = {**REPLY, "campaign": replies.campaign(Keyword.HELP, "mdr2-1")}
    assert replies.decide(help_reply, {"opted_out": {"inbound_id": "mdr2-1"}}, True).problem
    assert replies.decide(help_reply, None, True).source == "12065550100"


def test_replies_only_from_our_numbers_and_only_by_the_daemon() -> None:
    assert replies.decide(REPLY, {"opted_out": {"inbound_id": "mdr2-1"}}, False).problem
    forged = {**REPLY, "user": "alice"}
    assert replies.decide(forged, {"opted_out": {"inbound_id": "mdr2-1"}}, True).problem


def test_opt_out_rate_per_number_and_day() -> None:
    found = optout_rate.rates(
        "2026-01-05", Counter({"A": 1, "B": 3, "C": 1}), Counter({"A": 100, "B": 20})
    )
    by_number = {r.source: r for r in found}
    assert by_number["A"].rate == 0.01 and not by_number["A"].over()
    assert by_number["B"].rate == 0.15 and by_number["B"].over()
    assert by_number["C"].rate is None and by_number["C"].over()
