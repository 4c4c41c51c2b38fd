"""Cancel and retry on the real server."""

from __future__ import annotations

from tests.interventions_suite import InterventionsSuite


class TestInterventionsOnServer(InterventionsSuite):
    """Every intervention test (tests/interventions_suite.py), on the server's `db`."""
