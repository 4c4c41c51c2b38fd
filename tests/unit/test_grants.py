"""A cycle reads each sender's grants once, and each recipient's consent for every message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobs.dispatch.dispatcher import Dispatcher
from jobs.dispatch.grants import CycleDirectory
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from tests.unit.fakes import RECIPIENT, RECIPIENT_2, SENDER, FakeProvider
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

    def recipient(self, number: str) -> dict[str, Any] | None:
        self.reads.append(f"consent {number}")
        return self.directory.recipient(number)

    def verified_after(self, after: str | None, limit: int) -> list[str]:
        return self.directory.verified_after(after, limit)

    def opt_out(self, number: str, *, now: datetime, reason: str) -> None:
        self.directory.opt_out(number, now=now, reason=reason)


def test_grants_are_read_once_per_cycle_and_consent_for_every_message(
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
        "grants alice", f"consent {RECIPIENT}", f"consent {RECIPIENT_2}", f"consent {RECIPIENT}",
        "grants alice", f"consent {RECIPIENT_2}",
    ]  # fmt: skip


def test_an_opt_out_takes_effect_for_the_next_message_of_the_same_cycle(
    store: OutboxStore, directory: Directory, dispatcher: Dispatcher, provider: FakeProvider
) -> None:
    first = submit(store, to=RECIPIENT, body="first", priority=1)
    second = submit(store, to=RECIPIENT, body="second")

    def opt_out_after_the_first() -> None:
        directory.opt_out(RECIPIENT, now=dispatcher.clock.now(), reason="STOP")
        provider.on_send = None

    provider.on_send = opt_out_after_the_first
    dispatcher.run_once()

    assert provider.calls == [(RECIPIENT, SENDER, "first")]
    assert status(store, first)["state"] == "sent"
    assert status(store, second)["error"]["code"] == "opted_out"


def test_a_cycle_directory_hands_out_copies_of_the_grants_it_holds(directory: Directory) -> None:
    cycle = CycleDirectory(directory)

    cycle.sources_for("alice").clear()

    assert cycle.sources_for("alice") == directory.sources_for("alice")
