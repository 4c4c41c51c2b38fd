"""The store and send-cycle tests again, on the real server: every store operation the daemon
uses (indexes, intake, claim, fenced writes, lease recovery, fan-out, status, opt-out marks)."""

from __future__ import annotations

from tests.unit.test_cycle import *  # noqa: F403
from tests.unit.test_store import *  # noqa: F403
