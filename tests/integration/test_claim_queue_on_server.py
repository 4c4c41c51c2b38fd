"""The claim queue on the real server (tests/queue_suite.py)."""

from __future__ import annotations

from tests.queue_suite import QueueSuite


class TestClaimQueueOnServer(QueueSuite):
    """Every claim queue test, on the server's `db`."""
