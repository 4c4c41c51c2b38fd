"""The outbox store on mongomock: claim order, fenced writes, the status projection."""

from __future__ import annotations

from tests.store_suite import StoreSuite


class TestStoreOnMongomock(StoreSuite):
    """Every store test (tests/store_suite.py), on the unit tests' mongomock `db`."""
