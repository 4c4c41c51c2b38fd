"""The send cycle on mongomock: admit, claim, check, send and record, with a fake provider."""

from __future__ import annotations

from tests.cycle_suite import CycleSuite


class TestCycleOnMongomock(CycleSuite):
    """Every send-cycle test (tests/cycle_suite.py), on the unit tests' mongomock `db`."""
