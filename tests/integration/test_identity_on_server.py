"""One person is one phone number, on the real server (see tests/unit/test_one_person.py)."""

from __future__ import annotations

from tests.unit.test_one_person import *  # noqa: F403
