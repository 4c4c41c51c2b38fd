"""Receipts and opt-outs reach the metrics: final receipts by state, opt-outs by how they came."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from jobs import metrics
from jobs.simulator.server import FlowrouteSimulator
from tests.integration.helpers import numbers
from tests.integration.stack import SOURCE, Db, stack


class CountingSink:
    def __init__(self) -> None:
        self.counted: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

    def count(self, event: str, amount: float = 1.0, **labels: str) -> None:
        self.counted[(event, tuple(sorted(labels.items())))] += int(amount)

    def observe(self, event: str, value: float, **labels: str) -> None:
        return None

    def of(self, event: str) -> dict[str, int]:
        return {dict(k).popitem()[1]: n for (e, k), n in self.counted.items() if e == event}


@pytest.fixture
def sink() -> Iterator[CountingSink]:
    counting = CountingSink()
    metrics.install(counting)
    yield counting
    metrics.install(None)


def test_final_receipts_and_every_kind_of_opt_out_are_counted(
    db: Db, simulator: FlowrouteSimulator, sink: CountingSink
) -> None:
    good, bad, buffered, stopper, refused = numbers(5)
    simulator.opt_out(SOURCE, refused)
    with stack(db, simulator, [good, bad, buffered, stopper, refused]) as s:
        simulator.sms_callback = s.hooks + "/inbound"
        for to in (good, bad, buffered, stopper, refused):
            s.enqueue(to)
        s.drain()
        ids = {m.to: m.id for m in simulator.messages()}
        simulator.post_receipts([ids[good]])
        simulator.post_receipts([ids[bad]], final_status="delivery failure", final_code=1201)
        simulator.post_receipts([ids[buffered]], final_status="message buffered", final_code="1110")
        simulator.post_receipts([ids[good]])  # a resent receipt counts once
        simulator.send_inbound(stopper, SOURCE, "STOP")
        simulator.send_inbound(stopper, SOURCE, "stop")  # already opted out: not counted again
        s.drain()
    assert sink.of("receipts") == {"delivered": 1, "undelivered": 2}
    assert sink.of("opt_outs") == {"flowroute_1110": 1, "receipt_1110": 1, "stop": 1}
