"""Account faults hold the account instead of burning messages, and a probe resumes sending,
against a fake provider on mongomock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pymongo.database import Database
from structlog.testing import capture_logs

from jobs.dispatch.account_gate import AccountGate
from jobs.dispatch.dispatcher import Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.doubles.ledgers import MemoryHolds
from jobs.errors import AccountError, PermanentError
from jobs.mongo import account
from jobs.mongo import status as status_queries
from jobs.mongo.store import Doc, OutboxStore
from tests.unit.fakes import RECIPIENT, FakeProvider
from tests.unit.helpers import broadcast, status, submit

UNAUTHORIZED = AccountError("401", "Unauthorized: missing or wrong API credentials", 401)
NOT_OWNED = AccountError("403", "the account does not own the 'from' number 12065550100", 403)


def queue_three(store: OutboxStore) -> list[Any]:
    return [submit(store, to=RECIPIENT, body=f"m{i}") for i in range(3)]


@pytest.mark.parametrize("refusal", [UNAUTHORIZED, NOT_OWNED], ids=["401", "403 from"])
def test_an_account_refusal_holds_every_message_queued_with_its_attempt_refunded(
    db: Database[Doc],
    dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    refusal: AccountError,
) -> None:
    ids = queue_three(store)
    provider.fail_next(refusal)

    dispatcher.run_once()
    dispatcher.run_once()

    assert len(provider.calls) == 1, "nothing more is tried while the account is held"
    for doc_id in ids:
        projected = status(store, doc_id)
        assert (projected["state"], projected["attempts"]) == ("queued", 0)
        assert projected["error"]["code"] == "account_held"
        assert projected["error"]["provider_code"] == refusal.code
    assert account.is_held(db)
    held = account.read(db)
    assert held is not None
    assert (held.code, held.failures) == (refusal.code, 1)


def test_a_successful_probe_after_the_backoff_resumes_sending_by_itself(
    db: Database[Doc],
    dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    ids = queue_three(store)
    provider.fail_next(UNAUTHORIZED)
    dispatcher.run_once()
    clock.advance(29)
    dispatcher.run_once()
    assert len(provider.calls) == 1

    clock.advance(2)
    for _ in range(3):
        dispatcher.run_once()

    assert [status(store, doc_id)["state"] for doc_id in ids] == ["sent"] * 3
    assert all(status(store, doc_id)["attempts"] == 1 for doc_id in ids)
    assert "error" not in status(store, ids[0])
    assert not account.is_held(db)


def test_each_failed_probe_waits_twice_as_long(
    db: Database[Doc],
    dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    queue_three(store)
    provider.fail_next(UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED)
    delays = []
    for _ in range(3):
        dispatcher.run_once()
        held = account.read(db)
        assert held is not None
        delays.append(held.probe_at - clock.now())
        clock.advance((held.probe_at - clock.now()).total_seconds())

    assert delays == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120)]
    assert len(provider.calls) == 3


def test_failed_probes_never_wait_longer_than_ten_minutes(
    db: Database[Doc],
    dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    queue_three(store)
    provider.fail_next(*([UNAUTHORIZED] * 9))
    delays = []
    for _ in range(9):
        dispatcher.run_once()
        held = account.read(db)
        assert held is not None
        delays.append((held.probe_at - clock.now()).total_seconds())
        clock.advance((held.probe_at - clock.now()).total_seconds())

    assert delays == [30, 60, 120, 240, 480, 600, 600, 600, 600]
    assert len(provider.calls) == 9


def test_a_restarted_daemon_probes_at_once(
    db: Database[Doc],
    dispatcher: Dispatcher,
    make_dispatcher: Callable[..., Dispatcher],
    store: OutboxStore,
    provider: FakeProvider,
) -> None:
    ids = queue_three(store)
    provider.fail_next(UNAUTHORIZED)
    dispatcher.run_once()

    restarted = make_dispatcher()
    for _ in range(3):
        restarted.run_once()

    assert [status(store, doc_id)["state"] for doc_id in ids] == ["sent"] * 3
    assert not account.is_held(db)


def test_the_hold_is_logged_at_most_once_a_minute(
    dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    queue_three(store)
    provider.fail_next(*([UNAUTHORIZED] * 10))

    with capture_logs() as logs:
        for _ in range(24):  # two minutes, a cycle every five seconds, probes failing
            dispatcher.run_once()
            clock.advance(5)

    held = [entry for entry in logs if entry["event"] == "account.held"]
    assert 2 <= len(held) <= 4
    assert held[0]["code"] == "401"


def test_a_hold_that_lasts_is_logged_exactly_once_a_minute(clock: ManualClock) -> None:
    holds = MemoryHolds(clock)
    for _ in range(7):  # the other daemons' probes failed, so the next one is ten minutes away
        holds.hold("401", "still refused")
    gate = AccountGate(holds, clock)
    gate.refresh()  # started before the refusal, so it waits for the probe

    with capture_logs() as logs:
        gate.refused(UNAUTHORIZED)
        logged_at = [0]
        for second in range(1, 180):  # three minutes, the gate asked every second
            clock.advance(1)
            gate.refresh()
            assert gate.waiting() is not None
            if len(logs) > len(logged_at):
                logged_at.append(second)

    assert logged_at == [0, 60, 120], "a refusal is logged at once, then once a minute"
    assert {entry["event"] for entry in logs} == {"account.held"}


def test_other_daemons_stop_too_and_resume_when_the_hold_is_released(
    make_dispatcher: Callable[..., Dispatcher],
    store: OutboxStore,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    first, second = make_dispatcher(), make_dispatcher()
    first.run_once()
    second.run_once()  # both have started, so neither probes at once
    queue_three(store)
    provider.fail_next(UNAUTHORIZED)

    first.run_once()
    clock.advance(5)  # the others read the shared hold at most every five seconds
    second.run_once()

    assert len(provider.calls) == 1
    clock.advance(26)
    second.run_once()  # its probe goes through, and the rest of its batch after it
    first.run_once()
    assert len(provider.calls) == 4
    assert not account.is_held(store.db)


def test_campaign_status_shows_flowroutes_code_beside_provider(
    db: Database[Doc], dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
) -> None:
    campaign = broadcast(store)
    dispatcher.run_once()
    provider.fail_next(PermanentError("403", "recipient is on a carrier block list", 403))
    dispatcher.run_once()

    summary = status_queries.campaign(db, str(campaign))

    assert summary["reasons"] == {"provider:403": 1}
    assert summary["states"] == {"failed": 1, "sent": 1}
    assert summary["account"] == {"held": False}
