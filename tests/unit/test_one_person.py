"""One person is one phone number, on the unit tests' mongomock `db`."""

from __future__ import annotations

from tests.identity_suite import IdentitySuite


class TestIdentityOnMongomock(IdentitySuite):
    """Every identity test (tests/identity_suite.py), on mongomock."""
