"""Pacing: no 1000 ms window (plus margin) ever holds more than `rate` send attempts."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.doubles.clock import ManualClock
from jobs.pacing import MARGIN_SECONDS, WINDOW_SECONDS, SlidingWindowPacer

WINDOW = WINDOW_SECONDS + MARGIN_SECONDS
# Float sums of clock advances may land a hair inside the window.
EPSILON = 1e-9


def acquire_times(pacer: SlidingWindowPacer, clock: ManualClock, gaps: list[float]) -> list[float]:
    """Acquire once per gap, advancing the clock by the gap first; the time of each acquisition."""
    times = []
    for gap in gaps:
        clock.advance(gap)
        pacer.acquire()
        times.append(clock.monotonic())
    return times


def crowded_windows(times: list[float], rate: int) -> list[int]:
    """Indexes i where acquisitions i and i+rate fall inside one window."""
    return [i for i in range(len(times) - rate) if times[i + rate] - times[i] < WINDOW - EPSILON]


@pytest.mark.parametrize("rate", [1, 5, 30])
def test_back_to_back_acquisitions_never_overfill_a_window(rate: int) -> None:
    clock = ManualClock()
    start = clock.monotonic()

    times = acquire_times(SlidingWindowPacer(rate, clock), clock, [0.0] * 300)

    assert crowded_windows(times, rate) == []
    assert times[:rate] == [start] * rate
    assert times[rate] == pytest.approx(start + WINDOW)
    # Waits no longer than needed: one full window per `rate` acquisitions.
    assert times[-1] == pytest.approx(start + (300 // rate - (300 % rate == 0)) * WINDOW)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=8),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.7), min_size=1, max_size=120),
)
def test_no_window_ever_holds_more_than_rate_acquisitions(rate: int, gaps: list[float]) -> None:
    clock = ManualClock()

    times = acquire_times(SlidingWindowPacer(rate, clock), clock, gaps)

    assert crowded_windows(times, rate) == []


def test_acquisition_does_not_wait_when_the_window_has_room() -> None:
    clock = ManualClock()
    pacer = SlidingWindowPacer(5, clock)

    times = acquire_times(pacer, clock, [0.3] * 20)

    assert [round(b - a, 9) for a, b in itertools.pairwise(times)] == [0.3] * 19


def test_penalize_blocks_a_whole_window() -> None:
    clock = ManualClock()
    pacer = SlidingWindowPacer(5, clock)
    pacer.acquire()
    clock.advance(0.2)
    penalized_at = clock.monotonic()

    pacer.penalize()
    pacer.acquire()

    assert clock.monotonic() == pytest.approx(penalized_at + WINDOW)


def test_penalty_blocks_even_with_an_empty_window() -> None:
    clock = ManualClock()
    pacer = SlidingWindowPacer(100, clock)
    start = clock.monotonic()

    pacer.penalize()
    times = acquire_times(pacer, clock, [0.0] * 3)

    assert times == pytest.approx([start + WINDOW] * 3)


def test_penalty_already_served_costs_nothing() -> None:
    clock = ManualClock()
    pacer = SlidingWindowPacer(5, clock)
    pacer.penalize()
    clock.advance(2.0)
    before = clock.monotonic()

    pacer.acquire()

    assert clock.monotonic() == before


def test_no_rate_never_waits() -> None:
    clock = ManualClock()
    pacer = SlidingWindowPacer(None, clock)
    start = clock.monotonic()

    for _ in range(1000):
        pacer.acquire()
    pacer.penalize()
    pacer.acquire()

    assert clock.monotonic() == start
