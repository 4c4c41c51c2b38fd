"""The store and send-cycle tests again, on the real server: every store operation the daemon
uses (indexes, intake, claim, fenced writes, lease recovery, fan-out, status, opt-out marks)."""

from __future__ import annotations

from tests.cycle_suite import CycleSuite
from tests.store_suite import StoreSuite


class TestStoreOnServer(StoreSuite):
    """Every store test (tests/store_suite.py), on the server's `db`."""


class TestCycleOnServer(CycleSuite):
    """Every send-cycle test (tests/cycle_suite.py), on the server's `db`."""
