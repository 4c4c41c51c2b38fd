"""The connection's timeouts come from `[mongodb]` (pymongo connects lazily: no server needed)."""

from __future__ import annotations

import pytest

from jobs.mongo.connection import connect
from scheduler.settings import load_settings


def test_a_command_the_server_never_answers_times_out_as_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMS_OUTBOX_MONGODB__REPLY_TIMEOUT_SECONDS", "7.5")
    monkeypatch.setenv("SMS_OUTBOX_MONGODB__TIMEOUT_SECONDS", "2")
    db = connect(load_settings(None, {}).mongodb)
    try:
        pool = db.client.options.pool_options
        assert (pool.socket_timeout, pool.connect_timeout) == (7.5, 2.0)
        assert db.client.options.server_selection_timeout == 2.0
    finally:
        db.client.close()


def test_by_default_a_silent_server_fails_a_command_within_a_minute() -> None:
    db = connect(load_settings(None, {}).mongodb)
    try:
        assert db.client.options.pool_options.socket_timeout == 60.0
    finally:
        db.client.close()
