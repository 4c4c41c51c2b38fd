"""Operational metrics: events counted through `jobs.metrics`, gauges read from the database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pymongo.database import Database

from jobs import health, metrics
from jobs.doubles.clock import ManualClock
from jobs.errors import (
    OptedOutError,
    PermanentError,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
)
from jobs.metrics import MeteredPacer, MeteredProvider
from jobs.mongo import reports
from jobs.mongo.account import AccountHold
from jobs.mongo.store import Doc, OutboxStore
from jobs.rules import intake
from scheduler.surfaces.exporter import OutboxCollector, PrometheusSink, StoredAccount
from tests.unit.fakes import RECIPIENT, SENDER, CountingPacer, FakeProvider


class RecordingSink:
    def __init__(self) -> None:
        self.counts: list[tuple[str, float, dict[str, str]]] = []
        self.observed: list[tuple[str, float, dict[str, str]]] = []

    def count(self, event: str, amount: float = 1.0, **labels: str) -> None:
        self.counts.append((event, amount, labels))

    def observe(self, event: str, value: float, **labels: str) -> None:
        self.observed.append((event, value, labels))


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    recording = RecordingSink()
    metrics.install(recording)
    yield recording
    metrics.install(None)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "202"),
        (ThrottledError("429", "slow down", 429), "429"),
        (RetryableError("503", "maintenance", 503), "5xx"),
        (RetryableError("connect_error", "refused"), "connect_error"),
        (PermanentError("403", "not your number", 403), "4xx"),
        (OptedOutError("1110", "STOP", 400), "4xx"),
        (UnknownOutcomeError("timeout", "no answer"), "timeout"),
    ],
)
def test_each_flowroute_answer_falls_in_one_outcome_class(
    error: RetryableError | None, outcome: str
) -> None:
    assert metrics.send_outcome(error) == outcome


def test_metered_provider_counts_outcomes_and_latency(sink: RecordingSink) -> None:
    clock = ManualClock()
    fake = FakeProvider()
    provider = MeteredProvider(fake, clock)
    provider.send(RECIPIENT, SENDER, "hi")
    fake.fail_next(RetryableError("503", "maintenance", 503))
    with pytest.raises(RetryableError):
        provider.send(RECIPIENT, SENDER, "hi")
    assert [c[2]["outcome"] for c in sink.counts] == ["202", "5xx"]
    assert [o[0] for o in sink.observed] == ["send_seconds", "send_seconds"]


def test_pacing_waits_are_counted_only_when_the_pacer_held_a_send(sink: RecordingSink) -> None:
    clock = ManualClock()

    class SlowPacer(CountingPacer):
        def acquire(self) -> None:
            super().acquire()
            clock.advance(0.3)

    MeteredPacer(CountingPacer(), clock).acquire()
    assert sink.counts == []
    MeteredPacer(SlowPacer(), clock).acquire()
    assert sink.counts == [("pacing_waits", 1.0, {})]
    [(event, seconds, _)] = sink.observed
    assert event == "pacing_wait_seconds" and seconds == pytest.approx(0.3)


def test_the_metered_pacer_passes_a_429_on_to_the_pacer_it_measures() -> None:
    inner = CountingPacer()
    metered = MeteredPacer(inner, ManualClock())

    metered.penalize()

    assert (inner.penalties, inner.acquired) == (1, 0)


def test_nothing_is_recorded_once_the_sink_is_removed() -> None:
    recording = RecordingSink()
    metrics.install(recording)
    metrics.claim_lost()

    assert metrics.install(None) is recording
    metrics.claim_lost()
    metrics.sent(None, 0.1)
    metrics.paced(0.5)

    assert recording.counts == [("claim_losses", 1.0, {})]
    assert recording.observed == []
    assert isinstance(metrics.install(None), metrics.NoSink)


def test_labels_from_the_database_stay_bounded() -> None:
    assert reports.label("queued") == "queued"
    assert reports.label("+12065550101") == "other"
    assert reports.label("x" * 41) == "other"
    assert reports.label(None) == ""


def test_invented_states_fold_into_other_beyond_the_label_limit(db: Database[Doc]) -> None:
    db["message_status"].insert_many(
        [{"state": f"s{i}", "error": {"code": "provider"}} for i in range(100)]
        + [{"state": "sent"} for _ in range(3)]
    )
    counts = reports.states_and_reasons(db)
    assert len(counts) <= reports.MAX_LABELS + 1
    assert counts[("sent", "")] == 3
    assert sum(counts.values()) == 103


def test_prometheus_shows_messages_by_state_reason_and_queue(
    db: Database[Doc], store: OutboxStore, clock: ManualClock
) -> None:
    store.insert({"user": "alice", "to": RECIPIENT, "body": "hi"})
    for doc in store.new_documents(10):
        store.admit(doc["_id"], intake.admit(doc, clock.now(), 10))
    db["message_status"].insert_one(
        {"_id": "x", "state": "failed", "error": {"code": "provider", "detail": "503"}}
    )
    clock.advance(30)
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.count("sends", outcome="202")
    sink.count("opt_outs", via="+12065550101")  # a number never becomes a label
    registry.register(OutboxCollector(db, clock, health.AlwaysActive(), cache_seconds=5))
    text = generate_latest(registry).decode()
    assert 'sms_outbox_messages{state="queued"} 1.0' in text
    assert 'sms_outbox_messages_by_reason{reason="provider",state="failed"} 1.0' in text
    assert "sms_outbox_queue_depth 1.0" in text
    assert "sms_outbox_oldest_due_age_seconds 30.0" in text
    assert 'sms_outbox_sends_total{outcome="202"} 1.0' in text
    assert 'sms_outbox_sends_total{outcome="429"} 0.0' in text
    assert 'sms_outbox_opt_outs_total{via="other"} 1.0' in text
    assert "sms_outbox_account_held 0.0" in text
    assert "sms_outbox_database_up 1.0" in text


def test_database_gauges_are_cached_between_scrapes(db: Database[Doc], clock: ManualClock) -> None:
    collector = OutboxCollector(db, clock, health.AlwaysActive(), cache_seconds=5)
    registry = CollectorRegistry()
    registry.register(collector)
    generate_latest(registry)
    db["message_status"].insert_one({"state": "sent"})
    assert 'state="sent"' not in generate_latest(registry).decode()
    clock.advance(5)
    assert 'sms_outbox_messages{state="sent"} 1.0' in generate_latest(registry).decode()


class Held:
    def state(self) -> str:
        return health.HELD


def test_readiness_needs_the_database_and_an_account_that_is_not_held() -> None:
    def down() -> None:
        raise ConnectionError("refused")

    assert health.readiness(lambda: None, health.AlwaysActive()).ok
    assert not health.readiness(down, health.AlwaysActive()).ok
    assert "held" in health.readiness(lambda: None, Held()).detail


def test_liveness_fails_when_no_cycle_ends_or_one_runs_past_its_lease() -> None:
    beat = health.Heartbeat(now=100.0)
    assert health.liveness(beat, 110.0, poll_seconds=1, lease_seconds=120).ok
    assert not health.liveness(beat, 100.0 + 16, poll_seconds=1, lease_seconds=120).ok
    beat.begin(200.0)
    assert health.liveness(beat, 300.0, poll_seconds=1, lease_seconds=120).ok
    assert not health.liveness(beat, 321.0, poll_seconds=1, lease_seconds=120).ok
    beat.end(321.0)
    assert health.liveness(beat, 322.0, poll_seconds=1, lease_seconds=120).ok


def test_each_event_reaches_the_installed_sink(sink: RecordingSink) -> None:
    metrics.claim_lost()
    metrics.opted_out("flowroute_1110")
    metrics.database_unavailable("cycle")
    metrics.receipt("delivered")
    assert [c[0] for c in sink.counts] == [
        "claim_losses",
        "opt_outs",
        "database_outages",
        "receipts",
    ]


def test_an_account_held_in_the_database_shows_in_metrics_and_readiness(
    db: Database[Doc], clock: ManualClock
) -> None:
    account = StoredAccount(db)
    assert account.state() == health.ACTIVE
    AccountHold(db, clock).hold("401", "bad credentials")
    assert account.state() == health.HELD
    registry = CollectorRegistry()
    registry.register(OutboxCollector(db, clock, account, cache_seconds=5))
    assert "sms_outbox_account_held 1.0" in generate_latest(registry).decode()
    verdict = health.readiness(lambda: None, account)
    assert not verdict.ok and "held" in verdict.detail
