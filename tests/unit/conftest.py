"""Fixtures for the unit tests: an in-memory database under the shared store and cycle fixtures."""

from __future__ import annotations

import mongomock
import pytest
from pymongo.database import Database

from jobs.mongo.mongomock_compat import accept_sort_keyword
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

accept_sort_keyword()


@pytest.fixture
def db() -> Database[Doc]:
    database: Database[Doc] = mongomock.MongoClient(tz_aware=True)["t"]
    return database
