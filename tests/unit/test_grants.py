"""A cycle reads each sender's grants once, and its batch's consent once, after the claim."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobs.dispatch.dispatcher import Dispatcher
from jobs.dispatch.grants import CycleDirectory
from jobs.errors import OptedOutError
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from tests.unit.fakes import OTHER_SENDER, RECIPIENT, RECIPIENT_2, SENDER, FakeProvider
from tests.unit.helpers import status, submit


class CountingDirectory:
    """A directory that counts its reads."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.reads: list[str] = []

    def ensure_indexes(self) -> None:
        self.directory.ensure_indexes()

    def sources_for(self, user: str) -> list[str]:
        self.reads.append(f"grants {user}")
        return self.directory.sources_for(user)

    def max_priority(self, user: str) -> int:
        self.reads.append(f"max_priority {user}")
        return self.directory.max_priority(user)

    def recipient(self, number: str) -> dict[str, Any] | None:
        self.reads.append(f"consent {number}")
        return self.directory.recipient(number)

    def consent_of(self, numbers: list[str]) -> dict[str, dict[str, Any] | None]:
        self.reads.append(f"consent {' '.join(numbers)}")
        return self.directory.consent_of(numbers)

    def verified_page(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        return self.directory.verified_page(cursor, limit)

    def opt_out(self, number: str, *, now: datetime, reason: str) -> None:
        self.directory.opt_out(number, now=now, reason=reason)

    def is_source(self, number: str) -> bool:
        return self.directory.is_source(number)


def test_grants_are_read_once_per_cycle_and_consent_once_per_claimed_batch(
    store: OutboxStore, directory: Directory, dispatcher: Dispatcher, provider: FakeProvider
) -> None:
    counting = CountingDirectory(directory)
    dispatcher.directory = counting
    for to in (RECIPIENT, RECIPIENT_2, RECIPIENT):
        submit(store, to=to)

    dispatcher.run_once()
    dispatcher.run_once()  # idle: nothing claimed, nothing read
    submit(store, to=RECIPIENT_2)
    dispatcher.run_once()

    assert len(provider.calls) == 4
    assert counting.reads == [
        f"consent {' '.join(sorted({RECIPIENT, RECIPIENT_2}))}", "grants alice",
        f"consent {RECIPIENT_2}", "grants alice",
    ]  # fmt: skip


def test_an_opt_out_recorded_before_the_claim_is_honoured_for_every_message_of_the_batch(
    store: OutboxStore, directory: Directory, dispatcher: Dispatcher, provider: FakeProvider
) -> None:
    first = submit(store, to=RECIPIENT, body="first")
    second = submit(store, to=RECIPIENT, body="second")
    other = submit(store, to=RECIPIENT_2, body="other")
    directory.opt_out(RECIPIENT, now=dispatcher.clock.now(), reason="STOP")

    dispatcher.run_once()

    assert provider.calls == [(RECIPIENT_2, SENDER, "other")]
    assert status(store, first)["error"]["code"] == "opted_out"
    assert status(store, second)["error"]["code"] == "opted_out"
    assert status(store, other)["state"] == "sent"


def test_an_opt_out_by_another_process_during_a_batch_takes_effect_from_the_next_batch(
    store: OutboxStore, directory: Directory, dispatcher: Dispatcher, provider: FakeProvider
) -> None:
    # Consent is read once, just after the claim: a message of the batch already being sent
    # still goes out; the next batch is refused.
    first = submit(store, to=RECIPIENT, body="first", priority=1)
    second = submit(store, to=RECIPIENT, body="second")

    def opt_out_after_the_first() -> None:
        directory.opt_out(RECIPIENT, now=dispatcher.clock.now(), reason="STOP")
        provider.on_send = None

    provider.on_send = opt_out_after_the_first
    dispatcher.run_once()
    third = submit(store, to=RECIPIENT, body="third")
    dispatcher.run_once()

    assert provider.calls == [(RECIPIENT, SENDER, "first"), (RECIPIENT, SENDER, "second")]
    assert status(store, first)["state"] == status(store, second)["state"] == "sent"
    assert status(store, third)["error"]["code"] == "opted_out"


def test_an_opt_out_this_daemon_records_stops_the_next_message_of_the_same_batch(
    store: OutboxStore, dispatcher: Dispatcher, provider: FakeProvider
) -> None:
    first = submit(store, to=RECIPIENT, body="first", priority=1)
    second = submit(store, to=RECIPIENT, body="second")
    provider.fail_next(OptedOutError("1110", f"recipient {RECIPIENT} has opted out", 400))

    dispatcher.run_once()

    assert provider.calls == [(RECIPIENT, SENDER, "first")]
    assert status(store, first)["error"]["code"] == "opted_out"
    assert status(store, second)["error"]["code"] == "opted_out"


UNVERIFIED = "12065550111"


def test_a_batch_s_consent_read_keeps_the_identity_rules(directory: Directory) -> None:
    # Any opt-out among a number's spellings wins; consent needs a verified record.
    now = datetime(2026, 1, 1, tzinfo=UTC)
    users = directory.users
    users.insert_many([
        {"phone": "+" + RECIPIENT, "verified": True},
        {"phone": RECIPIENT[1:], "verified": True, "opted_out": {"at": now, "reason": "STOP"}},
        {"phone": UNVERIFIED[1:], "verified": False},
    ])  # fmt: skip
    unknown = "12065550177"

    held = directory.consent_of([RECIPIENT, RECIPIENT_2, UNVERIFIED, unknown])

    assert held == {
        n: directory.recipient(n) for n in (RECIPIENT, RECIPIENT_2, UNVERIFIED, unknown)
    }
    opted, other, unverified = held[RECIPIENT], held[RECIPIENT_2], held[UNVERIFIED]
    assert opted is not None and "opted_out" in opted
    assert other is not None and "opted_out" not in other
    assert unverified is not None and unverified["verified"] is False
    assert held[unknown] is None


def test_a_cycle_directory_hands_out_copies_of_the_grants_it_holds(directory: Directory) -> None:
    cycle = CycleDirectory(directory)

    cycle.sources_for("alice").clear()

    assert cycle.sources_for("alice") == directory.sources_for("alice")


def test_a_revoked_grant_stops_sending_from_that_number_from_the_next_cycle(
    store: OutboxStore, directory: Directory, dispatcher: Dispatcher, provider: FakeProvider
) -> None:
    before = submit(store, body="before", **{"from": SENDER})
    dispatcher.run_once()
    assert status(store, before)["state"] == "sent"

    revoked = directory.authorized.delete_one({"user": "alice", "source": SENDER})
    assert revoked.deleted_count == 1
    asked = submit(store, body="asked", **{"from": SENDER})
    chosen = submit(store, body="chosen")
    dispatcher.run_once()

    assert provider.calls == [(RECIPIENT, SENDER, "before"), (RECIPIENT, OTHER_SENDER, "chosen")]
    refused = status(store, asked)
    assert (refused["state"], refused["error"]["code"]) == ("rejected", "source_not_granted")
    assert status(store, chosen)["state"] == "sent"
