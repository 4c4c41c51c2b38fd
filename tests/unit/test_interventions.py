"""Cancel and retry on the unit tests' mongomock `db`."""

from __future__ import annotations

from tests.interventions_suite import InterventionsSuite


class TestInterventionsOnMongomock(InterventionsSuite):
    """Every intervention test (tests/interventions_suite.py), on mongomock."""
