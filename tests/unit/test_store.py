"""The outbox store on mongomock: claim order, fenced writes, the status projection."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pymongo.database import Database
from pymongo.errors import AutoReconnect

from jobs.doubles.clock import ManualClock
from jobs.errors import StoreUnavailable
from jobs.model import State
from jobs.mongo.store import Doc, OutboxStore
from tests.store_suite import StoreSuite


class TestStoreOnMongomock(StoreSuite):
    """Every store test (tests/store_suite.py), on the unit tests' mongomock `db`."""


class Unreachable:
    """A collection whose server went away."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise AutoReconnect("connection closed")

        return fail


def test_every_public_method_of_the_store_own_or_inherited_raises_the_project_s_errors() -> None:
    public = {
        name: inspect.getattr_static(OutboxStore, name)
        for name in dir(OutboxStore)
        if not name.startswith("_")
    }
    methods = {name: member for name, member in public.items() if inspect.isfunction(member)}

    assert {"claim", "finish", "begin_send", "cancel", "admit", "add_children"} <= set(methods)
    assert [n for n, m in methods.items() if not getattr(m, "__translating__", False)] == []


def test_a_fenced_write_during_an_outage_raises_store_unavailable(
    db: Database[Doc], clock: ManualClock
) -> None:
    store = OutboxStore(db, clock)
    store.outbox = Unreachable()  # type: ignore[assignment]
    claimed = {"_id": "m1", "claim_token": "t1", "rev": 2}

    with pytest.raises(StoreUnavailable):
        store.finish(claimed, State.SENT, provider_id="mdr2-1")
