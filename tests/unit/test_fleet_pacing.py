"""Fleet pacing on an in-memory database: daemons that share one account share its limit."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, cast

import mongomock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo.database import Database
from pymongo.errors import ServerSelectionTimeoutError

from jobs.doubles.clock import ManualClock
from jobs.errors import StoreUnavailable
from jobs.mongo.fleet_pacing import FleetPacer
from jobs.mongo.pacing_blocks import PACING
from jobs.pacing import GatedProvider
from jobs.rules.slots import WINDOW_SECONDS, SlotPlan

RATE = 5
PLAN = SlotPlan(RATE, margin=0.025)
# A slot may be taken up to `late` after its time, so `rate` attempts span at least this.
SHORTEST_SPAN = WINDOW_SECONDS + PLAN.margin - PLAN.late
EPSILON = 1e-6

Db = Database[dict[str, Any]]


def now_clock() -> ManualClock:
    """A manual clock starting now: the in-memory server expires blocks by the real time."""
    return ManualClock(datetime.now(UTC))


def fresh_db() -> Db:
    database: Db = mongomock.MongoClient(tz_aware=True)["t"]
    return database


def fleet(db: Db, clock: ManualClock, size: int) -> list[FleetPacer]:
    """`size` daemons' pacers on one account, reading server time from the shared clock."""
    return [
        FleetPacer(db, "acct", PLAN, clock, server_time=clock.now, early=0.1) for _ in range(size)
    ]


def run(
    pacers: list[FleetPacer], clock: ManualClock, steps: list[tuple[int, float]]
) -> list[float]:
    """For each (daemon, gap): wait `gap`, then that daemon acquires; the acquisition times."""
    times = []
    for who, gap in steps:
        clock.advance(gap)
        take_slot(pacers[who])
        times.append(clock.monotonic())
    return times


def take_slot(pacer: FleetPacer) -> None:
    """Acquire and wait for the slot itself, as a request through `GatedProvider` does."""
    pacer.acquire()
    pacer.wait_for_slot()


def crowded(times: list[float], rate: int = RATE) -> list[int]:
    """Indexes i where acquisitions i and i + rate fall closer than the shortest span allowed."""
    times = sorted(times)
    return [
        i for i in range(len(times) - rate) if times[i + rate] - times[i] < SHORTEST_SPAN - EPSILON
    ]


def test_one_daemon_alone_sends_at_the_full_spacing() -> None:
    clock = now_clock()
    (pacer,) = fleet(fresh_db(), clock, 1)

    times = run([pacer], clock, [(0, 0.0)] * 50)

    assert crowded(times) == []
    assert times[-1] - times[0] == pytest.approx(49 * PLAN.spacing, abs=PLAN.late)
    assert min(b - a for a, b in itertools.pairwise(times)) >= PLAN.spacing - PLAN.late


def test_one_daemon_makes_up_a_slot_missed_between_two_batches() -> None:
    clock = now_clock()
    (pacer,) = fleet(fresh_db(), clock, 1)
    steps = [(0, 0.0)] * 20
    steps += [(0, PLAN.spacing * 1.5)]  # a slow claim between two batches
    steps += [(0, 0.0)] * 19

    times = run([pacer], clock, steps)

    assert crowded(times) == []
    assert times[-1] - times[0] <= 39 * PLAN.spacing + PLAN.late


@pytest.mark.parametrize("size", [2, 3, 4])
def test_daemons_taking_turns_never_crowd_a_window(size: int) -> None:
    clock = now_clock()
    pacers = fleet(fresh_db(), clock, size)

    times = run(pacers, clock, [(i % size, 0.0) for i in range(60)])

    assert crowded(times) == []


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(1, 4),
    steps=st.lists(st.tuples(st.integers(0, 3), st.floats(0.0, 0.6)), min_size=1, max_size=80),
)
def test_no_window_ever_holds_more_than_rate_attempts_from_the_fleet(
    size: int, steps: list[tuple[int, float]]
) -> None:
    clock = now_clock()
    pacers = fleet(fresh_db(), clock, size)

    times = run(pacers, clock, [(who % size, gap) for who, gap in steps])

    assert crowded(times) == []


def test_a_daemon_killed_holding_a_block_stalls_the_others_one_block_at_most() -> None:
    clock = now_clock()
    survivor, doomed = fleet(fresh_db(), clock, 2)
    run([doomed], clock, [(0, 0.0)])  # it wins a block, sends once and dies holding the rest
    dead_at = clock.monotonic()

    take_slot(survivor)

    assert clock.monotonic() - dead_at <= PLAN.block_seconds + EPSILON


def test_a_refusal_holds_back_a_daemon_that_reserved_ahead() -> None:
    clock = now_clock()
    sender, waiting = fleet(fresh_db(), clock, 2)
    sender.acquire()
    waiting._prepare()
    waiting._reserve(waiting._now())  # the next block is its own before the refusal comes
    refused_at = clock.monotonic()

    sender.penalize()
    take_slot(waiting)

    assert clock.monotonic() >= refused_at + WINDOW_SECONDS + PLAN.margin - EPSILON


def test_a_refusal_keeps_later_reservations_out_of_the_penalty() -> None:
    clock = now_clock()
    first, second = fleet(fresh_db(), clock, 2)
    take_slot(first)
    refused_at = clock.monotonic()

    first.penalize()
    take_slot(second)
    take_slot(first)

    assert clock.monotonic() >= refused_at + WINDOW_SECONDS + PLAN.margin - EPSILON
    assert second._block != first._block


def test_a_far_future_penalty_is_ignored() -> None:
    db, clock = fresh_db(), now_clock()
    (pacer,) = fleet(db, clock, 1)
    db[PACING].insert_one({"_id": "acct:penalty", "account": "acct", "until": 1e12})
    pacer._prepare()
    pacer._blocked_until = 0.0
    pacer._reserve(pacer._now() - 10 * PLAN.block_seconds)  # a block due later: checked at use
    start = clock.monotonic()

    pacer.acquire()

    assert clock.monotonic() - start < 12 * PLAN.block_seconds


def test_one_daemon_spends_one_command_per_block() -> None:
    clock = now_clock()
    (pacer,) = fleet(fresh_db(), clock, 1)
    pacer.acquire()
    before = pacer.commands

    run([pacer], clock, [(0, 0.0)] * 100)

    assert pacer.commands - before <= 100 / RATE + 1


def test_a_fleet_spends_well_under_one_command_per_message() -> None:
    clock = now_clock()
    pacers = fleet(fresh_db(), clock, 4)
    for pacer in pacers:
        pacer.acquire()
    before = sum(p.commands for p in pacers)

    # Running side by side, each daemon sends a whole block in its turn.
    run(pacers, clock, [(i // RATE % 4, 0.0) for i in range(200)])

    assert (sum(p.commands for p in pacers) - before) / 200 < 0.75


def test_blocks_of_an_account_are_its_own() -> None:
    db, clock = fresh_db(), now_clock()
    mine = FleetPacer(db, "one", PLAN, clock, server_time=clock.now)
    other = FleetPacer(db, "two", PLAN, clock, server_time=clock.now)
    mine.acquire()
    start = clock.monotonic()

    other.acquire()

    assert clock.monotonic() == start


class _Unreachable:
    """A collection whose server cannot be reached."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise ServerSelectionTimeoutError("no server")

        return fail


class _UnreachableDb:
    def __getitem__(self, name: str) -> _Unreachable:
        return _Unreachable()


def test_without_the_database_nothing_is_paced_through() -> None:
    clock = now_clock()
    pacer = FleetPacer(cast(Db, _UnreachableDb()), "acct", PLAN, clock, server_time=clock.now)

    with pytest.raises(StoreUnavailable):
        pacer.acquire()


def test_a_refusal_without_the_database_still_holds_this_daemon_back() -> None:
    db, clock = fresh_db(), now_clock()
    pacer = FleetPacer(db, "acct", PLAN, clock, server_time=clock.now)
    pacer.acquire()
    refused_at = clock.monotonic()
    pacer.blocks.pacing = cast(Any, _Unreachable())

    pacer.penalize()  # does not raise
    pacer.blocks.pacing = db[PACING]
    take_slot(pacer)

    assert clock.monotonic() >= refused_at + WINDOW_SECONDS + PLAN.margin - EPSILON


def test_a_slot_is_handed_out_early_and_the_request_held_until_the_slot() -> None:
    clock = now_clock()
    (pacer,) = fleet(fresh_db(), clock, 1)
    provider = RecordingProvider(clock)
    gated = GatedProvider(provider, pacer)
    for _ in range(2):  # the first slot may be taken a little late, when the block began
        pacer.acquire()
        gated.send("+12065550100", "+12065550199", "first")
    first = provider.sent_at[-1]

    pacer.acquire()
    handed_out = clock.monotonic()
    clock.advance(0.03)  # the renewal and the send ticket
    gated.send("+12065550100", "+12065550199", "second")

    assert provider.sent_at[-1] - first == pytest.approx(PLAN.spacing)
    assert provider.sent_at[-1] - handed_out == pytest.approx(pacer.early)


class RecordingProvider:
    """Records when each request left."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sent_at: list[float] = []

    def send(self, to: str, source: str, body: str) -> str:
        self.sent_at.append(self.clock.monotonic())
        return f"mdr2-{len(self.sent_at)}"


def test_a_request_that_misses_its_slot_takes_the_next_one_rather_than_leave_late() -> None:
    clock = now_clock()
    (pacer,) = fleet(fresh_db(), clock, 1)
    provider = RecordingProvider(clock)
    gated = GatedProvider(provider, pacer)
    for _ in range(2):  # the first slot may be taken a little late, when the block began
        pacer.acquire()
        gated.send("+12065550100", "+12065550199", "first")
    first = provider.sent_at[-1]

    pacer.acquire()
    clock.advance(pacer.early + PLAN.late)  # the writes before the send took too long
    gated.send("+12065550100", "+12065550199", "second")

    assert provider.sent_at[-1] - first == pytest.approx(2 * PLAN.spacing)


def test_a_slot_handed_out_for_a_message_never_sent_goes_to_the_next_one() -> None:
    clock = now_clock()
    (pacer,) = fleet(fresh_db(), clock, 1)
    provider = RecordingProvider(clock)
    gated = GatedProvider(provider, pacer)
    for _ in range(2):
        pacer.acquire()
        gated.send("+12065550100", "+12065550199", "sent")
    first = provider.sent_at[-1]

    pacer.acquire()  # its claim turns out to be lost: nothing is sent
    pacer.acquire()
    gated.send("+12065550100", "+12065550199", "next")

    assert provider.sent_at[-1] - first == pytest.approx(PLAN.spacing)
