"""Quiet hours in the send cycle: outside the recipient's local window a message waits, its attempt
refunded, and goes out when the window opens; on mongomock with a manual clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any

import pytest

from jobs.dispatch.dispatcher import Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from jobs.rules import replies
from jobs.rules.keywords import Keyword
from jobs.rules.quiet_hours import Window
from tests.unit.fakes import RECIPIENT, SENDER, CountingPacer, FakeProvider
from tests.unit.helpers import outbox, status

NEW_YORK = "12125550142"
# 06:00 in New York (EST, UTC-5) on a Monday in January; 05:00 in Chicago.
SIX_AM_NEW_YORK = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)
EIGHT_AM_NEW_YORK = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
EIGHT_AM_CHICAGO = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SIX_AM_NEW_YORK)


@pytest.fixture
def new_york(directory: Directory, clock: ManualClock) -> str:
    """A verified recipient whose area code puts them in New York."""
    return directory.add(NEW_YORK, verified=True, now=clock.now())


@pytest.fixture
def quiet(make_dispatcher: Callable[..., Dispatcher], new_york: str) -> Dispatcher:
    return make_dispatcher(quiet_hours=Window())


def submit(store: OutboxStore, **fields: Any) -> Any:
    doc = {"user": "alice", "to": NEW_YORK, "body": "good morning", **fields}
    return store.outbox.insert_one(doc).inserted_id


def test_message_before_eight_local_waits_until_eight_with_its_attempt_refunded(
    quiet: Dispatcher, store: OutboxStore, provider: FakeProvider, pacer: CountingPacer
) -> None:
    doc_id = submit(store)

    report = quiet.run_once()

    doc = outbox(store, doc_id)
    assert report.outcomes == {"queued": 1}
    assert (doc["state"], doc["attempts"], doc["due_at"]) == ("queued", 0, EIGHT_AM_NEW_YORK)
    assert doc["error"]["code"] == "quiet_hours"
    assert "08:00-21:00" in doc["error"]["detail"]
    assert "claim_token" not in doc
    projected = status(store, doc_id)
    assert (projected["state"], projected["error"]["code"]) == ("queued", "quiet_hours")
    assert provider.calls == []
    assert pacer.acquired == 0


def test_deferred_message_is_not_claimed_again_before_the_window_opens(
    quiet: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    doc_id = submit(store)
    quiet.run_once()

    clock.advance((EIGHT_AM_NEW_YORK - clock.now()).total_seconds() - 1)

    assert quiet.run_once().claimed == 0
    assert outbox(store, doc_id)["attempts"] == 0
    assert provider.calls == []


def test_deferred_message_is_sent_once_the_window_opens(
    quiet: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    doc_id = submit(store)
    quiet.run_once()

    clock.advance((EIGHT_AM_NEW_YORK - clock.now()).total_seconds())
    report = quiet.run_once()

    assert report.outcomes == {"sent": 1}
    projected = status(store, doc_id)
    assert (projected["state"], projected["attempts"]) == ("sent", 1)
    assert "error" not in projected
    assert provider.calls == [(NEW_YORK, SENDER, "good morning")]


def test_message_inside_the_window_is_sent_at_once(
    quiet: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    clock.advance((EIGHT_AM_NEW_YORK - clock.now()).total_seconds())
    doc_id = submit(store)

    report = quiet.run_once()

    assert report.outcomes == {"sent": 1}
    assert status(store, doc_id)["state"] == "sent"
    assert provider.calls == [(NEW_YORK, SENDER, "good morning")]


def test_each_recipient_waits_for_their_own_morning(
    quiet: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    new_york, chicago = submit(store), submit(store, to=RECIPIENT)
    quiet.run_once()
    assert (outbox(store, new_york)["due_at"], outbox(store, chicago)["due_at"]) == (
        EIGHT_AM_NEW_YORK,
        EIGHT_AM_CHICAGO,
    )

    clock.advance((EIGHT_AM_NEW_YORK - clock.now()).total_seconds())
    quiet.run_once()
    assert provider.recipients() == [NEW_YORK]

    clock.advance((EIGHT_AM_CHICAGO - clock.now()).total_seconds())
    quiet.run_once()
    assert provider.recipients() == [NEW_YORK, RECIPIENT]
    assert {status(store, doc_id)["state"] for doc_id in (new_york, chicago)} == {"sent"}


def test_message_after_the_window_closes_waits_for_the_next_morning(
    quiet: Dispatcher, store: OutboxStore, provider: FakeProvider, clock: ManualClock
) -> None:
    clock.advance((datetime(2026, 1, 6, 2, 0, tzinfo=UTC) - clock.now()).total_seconds())
    doc_id = submit(store)

    quiet.run_once()

    assert outbox(store, doc_id)["due_at"] == datetime(2026, 1, 6, 13, 0, tzinfo=UTC)
    assert provider.calls == []


def test_deferrals_never_use_up_the_attempts(
    new_york: str,
    make_dispatcher: Callable[..., Dispatcher],
    store: OutboxStore,
    provider: FakeProvider,
    clock: ManualClock,
) -> None:
    """Morning after morning the cycle comes round after a one-minute window has closed again."""
    narrow = make_dispatcher(quiet_hours=Window(start=time(8, 0), end=time(8, 1)))
    doc_id = submit(store)
    for _ in range(5):
        narrow.run_once()
        doc = outbox(store, doc_id)
        assert (doc["state"], doc["attempts"], doc["error"]["code"]) == ("queued", 0, "quiet_hours")
        clock.advance((doc["due_at"] - clock.now()).total_seconds() + 120)

    assert provider.calls == []


TOLL_FREE = "18005550100"


@pytest.mark.parametrize(("start", "end"), [(time(9, 0), time(10, 0)), (time(9, 0), time(14, 0))])
def test_a_recipient_with_no_allowed_hour_fails_with_its_own_reason_not_a_crash(
    make_dispatcher: Callable[..., Dispatcher],
    directory: Directory,
    store: OutboxStore,
    provider: FakeProvider,
    clock: ManualClock,
    start: time,
    end: time,
) -> None:
    directory.add(TOLL_FREE, verified=True, now=clock.now())
    doc_id = submit(store, to=TOLL_FREE)

    report = make_dispatcher(quiet_hours=Window(start, end)).run_once()

    assert report.outcomes == {"failed": 1}
    assert status(store, doc_id)["error"]["code"] == "no_allowed_hours"
    assert "share no" in status(store, doc_id)["error"]["detail"]
    assert provider.calls == []


def queue_reply(store: OutboxStore, keyword: Keyword, now: datetime) -> str:
    """A reply as the daemon queues it when NEW_YORK texts SENDER (see jobs/dispatch/inbound.py)."""
    inbound_id = f"mdr2-{keyword.value}"
    doc = {
        "_id": replies.message_id(keyword, inbound_id, NEW_YORK),
        "kind": "message", "user": replies.USER, "to": NEW_YORK, "from": SENDER,
        "body": f"{keyword.value} answered", "campaign": replies.campaign(keyword, inbound_id),
        "reply_to": inbound_id, "segments": 1, "encoding": "GSM-7", "priority": 10,
        "due_at": now, "state": "queued", "attempts": 0, "rev": 1, "synced": False,
        "created_at": now, "updated_at": now,
    }  # fmt: skip
    store.add_children([doc])
    return str(doc["_id"])


@pytest.mark.parametrize("keyword", [Keyword.STOP, Keyword.HELP], ids=["stop", "help"])
def test_a_reply_goes_out_at_once_in_the_recipient_s_quiet_hours(
    quiet: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    clock: ManualClock,
    keyword: Keyword,
) -> None:
    if keyword is Keyword.STOP:
        evidence = {"inbound_id": f"mdr2-{keyword.value}"}
        directory.opt_out(NEW_YORK, now=clock.now(), reason="stop", evidence=evidence)
    reply_id = queue_reply(store, keyword, clock.now())
    neighbour = directory.add("12125550143", verified=True, now=clock.now())
    waiting = submit(store, to=neighbour)  # an ordinary message at the same hour waits for eight

    quiet.run_once()

    assert provider.calls == [(NEW_YORK, SENDER, f"{keyword.value} answered")]
    assert status(store, reply_id)["state"] == "sent"
    assert outbox(store, waiting)["due_at"] == EIGHT_AM_NEW_YORK
