"""Slot arithmetic: spacing, blocks, missed slots, penalties, clock offsets, account names."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.rules.slots import WINDOW_SECONDS, SlotPlan, account_id, estimate_offset


@pytest.mark.parametrize("rate", [1, 5, 30])
def test_rate_slots_take_a_window_plus_margin(rate: int) -> None:
    plan = SlotPlan(rate, margin=0.025)

    assert plan.spacing * rate == pytest.approx(WINDOW_SECONDS + 0.025)
    assert plan.block_seconds == pytest.approx(1.025)


def test_default_margin_uses_more_than_97_percent_of_the_limit() -> None:
    assert SlotPlan(5).share_of_limit >= 0.97


@given(rate=st.integers(1, 50), block=st.integers(0, 10**9 // 50), index=st.integers(0, 49))
def test_slots_of_consecutive_blocks_are_evenly_spaced(rate: int, block: int, index: int) -> None:
    plan = SlotPlan(rate)
    index %= rate
    step = plan.slot_time(block, index + 1) if index + 1 < rate else plan.block_end(block)

    assert step - plan.slot_time(block, index) == pytest.approx(plan.spacing, abs=1e-6)
    assert plan.block_at(plan.slot_time(block, index) + 1e-6) == block


def test_a_block_reserved_mid_way_starts_at_the_first_slot_not_yet_missed() -> None:
    plan = SlotPlan(5, margin=0.025)
    block = 1000
    start = plan.slot_time(block, 0)

    assert plan.first_usable(block, start, 0.0) == 0
    assert plan.first_usable(block, start + plan.late, 0.0) == 0
    assert plan.first_usable(block, start + plan.late + 0.001, 0.0) == 1
    assert plan.first_usable(block, start + 0.5, 0.0) == 3
    assert plan.first_usable(block, plan.block_end(block), 0.0) == 5


def test_no_slot_before_a_penalty_ends() -> None:
    plan = SlotPlan(5, margin=0.025)
    block = 1000
    start = plan.slot_time(block, 0)

    assert plan.first_usable(block, start, not_before=start + 0.3) == 2
    assert plan.first_usable(block, start, not_before=start + 5.0) == 5


def test_a_penalty_covers_a_window_plus_margin_and_every_block_it_touches() -> None:
    plan = SlotPlan(5, margin=0.025)
    now = plan.slot_time(2000, 3)

    until = plan.penalty_until(now)

    assert until - now == pytest.approx(1.025)
    assert list(plan.blocks_until(now, until)) == [2000, 2001]


def test_plan_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        SlotPlan(0)
    with pytest.raises(ValueError):
        SlotPlan(5, margin=0.0)


def test_offset_trusts_the_shortest_round_trip() -> None:
    samples = [(10.0, 1000.0, 10.2), (11.0, 1001.0105, 11.002), (12.0, 1002.5, 12.5)]

    offset = estimate_offset(samples)

    assert offset.seconds == pytest.approx(1001.011 - 11.001)
    assert offset.uncertainty == pytest.approx(0.0015)


@given(
    true_offset=st.floats(-1e6, 1e9),
    sent=st.floats(0, 1e5),
    out=st.floats(0, 0.05),
    back=st.floats(0, 0.05),
)
def test_offset_error_stays_within_its_uncertainty(
    true_offset: float, sent: float, out: float, back: float
) -> None:
    server_ms = math.floor((sent + out + true_offset) * 1000) / 1000  # truncated to milliseconds

    offset = estimate_offset([(sent, server_ms, sent + out + back)])

    assert abs(offset.seconds - true_offset) <= offset.uncertainty + 1e-6


def test_offset_needs_samples() -> None:
    with pytest.raises(ValueError):
        estimate_offset([])


def test_account_id_names_the_account_without_its_key() -> None:
    one = account_id("https://api.flowroute.com", "12345678")

    assert one == account_id("https://API.flowroute.com/", "12345678")
    assert one != account_id("https://api.flowroute.com", "12345679")
    assert one != account_id("http://127.0.0.1:8080", "12345678")
    assert "12345678" not in one
