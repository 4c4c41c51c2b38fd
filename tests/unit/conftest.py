"""Fixtures for the unit tests: an in-memory database under the shared store and cycle fixtures."""

from __future__ import annotations

from typing import Any

import mongomock
import mongomock.collection
import pytest
from pymongo.database import Database

from jobs.mongo.store import Doc
from tests.unit.fixtures import (  # noqa: F401 (fixtures)
    clock,
    directory,
    dispatcher,
    make_dispatcher,
    pacer,
    provider,
    store,
)


def _accept_sort_keyword() -> None:
    """pymongo 4.20's UpdateOne hands bulk builders a `sort` keyword that mongomock 4.3 does
    not know; an update of one document by `_id` has nothing to sort, so it is dropped."""
    builder = mongomock.collection.BulkOperationBuilder
    if getattr(builder.add_update, "accepts_sort", False):
        return
    original: Any = builder.add_update

    def add_update(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        return original(self, *args, **kwargs)

    add_update.accepts_sort = True  # type: ignore[attr-defined]
    setattr(builder, "add_update", add_update)  # noqa: B010 (mypy: a method is not assignable)


_accept_sort_keyword()


@pytest.fixture
def db() -> Database[Doc]:
    database: Database[Doc] = mongomock.MongoClient(tz_aware=True)["t"]
    return database
