"""Confirming callbacks with Flowroute's records, and consent as the latest event says. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import pytest

from jobs.mongo.directory import Directory
from jobs.rules import confirm, identity
from jobs.rules.confirm import Agreement, ConfirmConfig

PERSON, OURS = "12065550101", "12065550100"
FIELDS = {"inbound_id": "mdr2-" + "1" * 32, "from": PERSON, "to": OURS, "body": "START"}
RECORD = {"direction": "inbound", "from": PERSON, "to": OURS, "body": "START"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_an_inbound_record_with_the_same_numbers_and_body_confirms_the_callback() -> None:
    assert confirm.inbound_mismatch(FIELDS, RECORD) is None
    assert confirm.inbound_mismatch(FIELDS, {**RECORD, "from": "+1 206 555 0101"}) is None


@pytest.mark.parametrize(
    "change",
    [{"direction": "outbound"}, {"from": "12065550102"}, {"to": "12065550199"},
     {"body": "STOP"}, {"body": "start"}, {"from": ["12065550101"]}, {"direction": None}],
)  # fmt: skip
def test_any_difference_from_the_record_leaves_the_callback_unconfirmed(
    change: dict[str, Any],
) -> None:
    assert confirm.inbound_mismatch(FIELDS, {**RECORD, **change}) is not None


def test_a_callback_without_flowroute_s_id_is_known_by_its_hash_name() -> None:
    assert confirm.has_message_id("mdr2-" + "a" * 32)
    assert not confirm.has_message_id("sha256-" + "a" * 32)


def receipt(status: str, code: str | None = None) -> dict[str, Any]:
    return {"provider_id": "mdr2-" + "2" * 32, "level": 2, "status": status, "status_code": code}


@pytest.mark.parametrize(
    ("status", "code", "state", "expected"),
    [("delivery failure", "1201", "sent", True), ("expired", None, "sent", True),
     ("message buffered", "1110", "delivered", True), ("delivered", None, "sent", False),
     ("smsc submit", None, "sent", False), ("delivery failure", None, "delivered", False)],
)  # fmt: skip
def test_only_receipts_that_would_change_something_wait_for_the_record(
    status: str, code: str | None, state: str, expected: bool
) -> None:
    assert confirm.consequential(receipt(status, code), state) is expected


def record(*statuses: tuple[str, Any]) -> dict[str, Any]:
    """A record whose receipts are newest first, as Flowroute lists them."""
    return {"delivery_receipts": [{"level": 2, "status": s, "status_code": c} for s, c in statuses]}


def test_a_receipt_agrees_only_with_a_record_showing_the_same_verdict() -> None:
    failure = receipt("delivery failure", "1201")
    assert confirm.receipt_agreement(failure, record(("undeliverable", 1201))) is Agreement.AGREES
    assert confirm.receipt_agreement(failure, record(("delivered", None))) is Agreement.CONTRADICTS
    assert confirm.receipt_agreement(failure, record(("smsc submit", None))) is Agreement.NOT_YET
    assert confirm.receipt_agreement(failure, {}) is Agreement.NOT_YET


def test_a_1110_receipt_needs_the_1110_in_the_record() -> None:
    opted_out = receipt("message buffered", "1110")
    plain = record(("delivery failure", 1201))
    assert confirm.receipt_agreement(opted_out, plain) is not Agreement.AGREES
    assert confirm.receipt_agreement(opted_out, record(("rejected", 1110))) is Agreement.AGREES


def test_lookups_back_off_and_give_up_on_a_missing_record_sooner_than_on_failures() -> None:
    config = ConfirmConfig(retry=timedelta(seconds=5), visible_within=timedelta(minutes=2))
    assert [config.delay(n).total_seconds() for n in range(4)] == [5, 10, 20, 40]
    later = T0 + timedelta(minutes=3)
    assert config.given_up(T0, later, absent=True)
    assert not config.given_up(T0, later, absent=False)
    assert config.given_up(T0, T0 + timedelta(days=2), absent=False)
    assert config.given_up("yesterday", T0, absent=False)  # a forged inbox entry: no time


STOP = {"at": T0, "reason": "texted STOP", "inbound_id": "mdr2-stop"}


def test_an_opt_out_ended_by_consent_given_again_is_kept_but_not_in_force() -> None:
    again = {"at": T0 + timedelta(hours=1), "ends": identity.opt_out_key(STOP)}
    ended = {"phone": PERSON, "verified": True, "opted_out": STOP, "opted_in_again": again}
    assert identity.active_opt_out(ended) is None
    assert "opted_out" not in (identity.view(PERSON, [ended]) or {})


def test_a_later_opt_out_is_in_force_whatever_the_clocks_say() -> None:
    again = {"at": T0 + timedelta(days=1), "ends": identity.opt_out_key(STOP)}
    # A second STOP recorded by a daemon whose clock is behind: still the latest event.
    newer = {"at": T0 - timedelta(hours=1), "reason": "texted STOP", "inbound_id": "mdr2-new"}
    doc = {"phone": PERSON, "verified": True, "opted_out": newer, "opted_in_again": again}
    assert (identity.view(PERSON, [doc]) or {})["opted_out"] == newer


def test_an_opt_out_in_force_on_any_record_wins_over_one_ended_on_another() -> None:
    again = {"at": T0, "ends": identity.opt_out_key(STOP)}
    ended = {"phone": PERSON, "verified": True, "opted_out": STOP, "opted_in_again": again}
    legacy = {"phone": "+" + PERSON, "opted_out": True}
    assert (identity.view(PERSON, [ended, legacy]) or {})["opted_out"] is True
    merged = identity.merged_record(PERSON, [ended, legacy])
    assert identity.active_opt_out(merged) is True
    assert merged["opt_ins"] == [again]


def test_merging_records_keeps_an_ended_opt_out_ended() -> None:
    again = {"at": T0, "ends": identity.opt_out_key(STOP)}
    ended = {"phone": PERSON, "verified": True, "opted_out": STOP, "opted_in_again": again}
    merged = identity.merged_record(PERSON, [ended, {"phone": PERSON[1:], "verified": True}])
    assert identity.active_opt_out(merged) is None
    assert merged["opt_outs"] == [STOP]


def test_an_operator_verifying_an_opted_out_number_ends_the_opt_out_without_erasing_it() -> None:
    db: Any = mongomock.MongoClient(tz_aware=True)["t"]
    people = Directory(db)
    people.add(PERSON, verified=True, now=T0)
    people.opt_out(PERSON, now=T0 + timedelta(hours=1), reason="texted STOP")
    assert (people.recipient(PERSON) or {}).get("opted_out")

    people.verify(PERSON, now=T0 + timedelta(hours=2), by="ops")

    assert (people.recipient(PERSON) or {}).get("opted_out") is None
    stored = db["users"].find_one({"phone": PERSON})
    assert stored["opted_out"]["reason"] == "texted STOP"
    assert [e["source"] for e in stored["opt_ins"]] == ["ops"]
    people.opt_out(PERSON, now=T0 + timedelta(hours=3), reason="flowroute 1110 receipt")
    assert (people.recipient(PERSON) or {})["opted_out"]["reason"] == "flowroute 1110 receipt"
    assert len(db["users"].find_one({"phone": PERSON})["opt_outs"]) == 2
