"""Cancel and retry on the real server (see tests/unit/test_interventions.py)."""

from __future__ import annotations

from tests.unit.test_interventions import *  # noqa: F403
