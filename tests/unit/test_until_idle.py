"""`run --until-idle` waits while another daemon is still making a broadcast's messages."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from jobs.dispatch.dispatcher import Dispatcher
from jobs.model import State
from jobs.mongo.store import OutboxStore
from scheduler.daemon import Daemon
from tests.unit.fakes import LEASE
from tests.unit.helpers import broadcast

CHECKS_BEFORE_DONE = 3


def test_until_idle_does_not_exit_while_another_daemon_fans_a_broadcast_out(
    monkeypatch: pytest.MonkeyPatch,
    make_dispatcher: Callable[..., Dispatcher],
    store: OutboxStore,
) -> None:
    dispatcher = make_dispatcher()
    broadcast(store)
    dispatcher.admit()
    [held] = store.claim(1, LEASE)  # held by another daemon, fanning it out
    asked = threading.Semaphore(0)
    finished = threading.Event()
    fanning_out = store.fanning_out

    def watched() -> bool:
        asked.release()
        return fanning_out()

    monkeypatch.setattr(store, "fanning_out", watched)

    def other_daemon_finishes() -> None:
        for _ in range(CHECKS_BEFORE_DONE):
            assert asked.acquire(timeout=30)
        store.finish(held, State.EXPANDED, extra={"recipients": 0})
        finished.set()

    other = threading.Thread(target=other_daemon_finishes)
    other.start()
    Daemon(dispatcher, poll_seconds=0.01, until_idle=True).run()
    other.join(timeout=30)

    assert finished.is_set(), "the daemon left while the broadcast was still being fanned out"
