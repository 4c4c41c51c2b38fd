"""The claim queue on mongomock (tests/queue_suite.py)."""

from __future__ import annotations

from tests.queue_suite import QueueSuite


class TestClaimQueueOnMongomock(QueueSuite):
    """Every claim queue test, on the unit tests' mongomock `db`."""
