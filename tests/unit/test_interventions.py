"""Cancel and retry on the unit tests' mongomock `db`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobs.rules.interventions import why_waiting
from tests.interventions_suite import InterventionsSuite


class TestInterventionsOnMongomock(InterventionsSuite):
    """Every intervention test (tests/interventions_suite.py), on mongomock."""


def test_a_message_whose_daemon_died_does_not_read_as_being_sent() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    sending = {"state": "sending"}
    alive = why_waiting(sending, now, now + timedelta(seconds=90)) or ""
    assert alive.startswith("claimed by a daemon, being sent") and "2026-05-01T12:01:30" in alive
    dead = why_waiting(sending, now, now - timedelta(seconds=1)) or ""
    assert dead.startswith("its daemon stopped") and "being sent" not in dead
