"""The producer refuses on the spot what the daemon would refuse at send time, and a reused key
with other content is a conflict, not a silent success."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pymongo.database import Database

from jobs import producer
from jobs.doubles.clock import ManualClock
from jobs.errors import InputError
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from tests.unit.fakes import OTHER_SENDER, RECIPIENT, UNKNOWN, UNVERIFIED


def _enqueue(store: OutboxStore, directory: Directory, clock: ManualClock, **fields: object) -> str:
    args: dict[str, object] = {"user": "alice", "to": RECIPIENT, "body": "hello", **fields}
    result = producer.enqueue(store, now=clock.now(), directory=directory, **args)  # type: ignore[arg-type]
    return str(result.id)


@pytest.mark.parametrize(
    ("fields", "reason", "words"),
    [
        ({"source": "12065550199"}, "source_not_granted", "was not granted"),
        ({"user": "mallory"}, "not_authorized", "may not send"),
        ({"to": UNVERIFIED}, "not_verified", "has not verified"),
        ({"to": UNKNOWN}, "not_verified", "not a known recipient"),
    ],
)
def test_what_the_daemon_would_refuse_is_refused_at_enqueue(
    store: OutboxStore,
    directory: Directory,
    clock: ManualClock,
    fields: dict[str, object],
    reason: str,
    words: str,
) -> None:
    with pytest.raises(InputError, match=words) as refused:
        _enqueue(store, directory, clock, **fields)

    assert refused.value.reason == reason
    assert store.outbox.count_documents({}) == 0


def test_an_opt_out_on_another_spelling_is_refused_at_enqueue(
    store: OutboxStore, directory: Directory, clock: ManualClock, db: Database[Doc]
) -> None:
    db["users"].insert_one({"phone": "+" + RECIPIENT, "opted_out": {"reason": "STOP"}})

    with pytest.raises(InputError, match="opted out"):
        _enqueue(store, directory, clock)


def test_a_granted_from_and_a_consenting_recipient_are_queued(
    store: OutboxStore, directory: Directory, clock: ManualClock
) -> None:
    _enqueue(store, directory, clock, source=OTHER_SENDER)

    assert store.outbox.count_documents({}) == 1


def test_reusing_a_key_with_another_body_is_a_conflict(
    store: OutboxStore, directory: Directory, clock: ManualClock
) -> None:
    first = _enqueue(store, directory, clock, key="k-1")

    with pytest.raises(InputError, match="different body") as refused:
        _enqueue(store, directory, clock, key="k-1", body="goodbye")

    assert refused.value.reason == "duplicate_key"
    assert first in str(refused.value)
    assert store.outbox.count_documents({}) == 1


def test_reusing_a_key_with_the_same_content_stays_idempotent(
    store: OutboxStore, directory: Directory, clock: ManualClock
) -> None:
    when = clock.now() + timedelta(hours=1, microseconds=123456)
    first = producer.enqueue(
        store, user="alice", to=RECIPIENT, body="hi", now=clock.now(), key="k", send_at=when
    )
    again = producer.enqueue(
        store, user="alice", to="(312) 555-0199", body="hi", now=clock.now(), key="k", send_at=when
    )

    assert (again.id, again.created) == (first.id, False)
    with pytest.raises(InputError, match="different send_at"):
        producer.enqueue(store, user="alice", to=RECIPIENT, body="hi", now=clock.now(), key="k")
