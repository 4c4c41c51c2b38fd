"""One person is one phone number, on the real server."""

from __future__ import annotations

from tests.identity_suite import IdentitySuite


class TestIdentityOnServer(IdentitySuite):
    """Every identity test (tests/identity_suite.py), on the server's `db`."""
