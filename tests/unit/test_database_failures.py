"""Database failures speak in one line that names the setting, with exit 78 or 69, for every
command, and cron mode gives up on a database that stays unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo.errors import (
    InvalidName,
    InvalidURI,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from jobs.mongo import failures

# Each runs the command in a new process, with a short database timeout.
pytestmark = pytest.mark.slow

COMMANDS = [
    ["run"],
    ["run", "--until-idle"],
    ["init"],
    ["status", "0123456789abcdef01234567"],
    ["recipients", "list"],
    ["recipients", "check"],
    ["senders", "list"],
    ["enqueue", "--user", "alice", "--to", "12065550101", "--body", "hi"],
    ["broadcast", "--user", "alice", "--body", "hi"],
]


def _cli(
    tmp_path: Path, *args: str, timeout: float = 60, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMS_OUTBOX_")}
    env.update(
        SMS_OUTBOX_FLOWROUTE__ACCESS_KEY="ak",
        SMS_OUTBOX_FLOWROUTE__SECRET_KEY="sk",
        SMS_OUTBOX_SECURITY__KEYS_DIR=str(tmp_path / "keys"),
        SMS_OUTBOX_MONGODB__TIMEOUT_SECONDS="0.3",
        SMS_OUTBOX_DISPATCH__POLL_SECONDS="0.1",
        SMS_OUTBOX_LOGGING__FORMAT="json",
        **{f"SMS_OUTBOX_{k.upper()}": v for k, v in settings.items()},
    )
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_bad_uri_is_one_line_naming_the_setting_with_exit_78_for_every_command(
    tmp_path: Path, command: list[str]
) -> None:
    result = _cli(tmp_path, *command, mongodb__uri="mongodb://u:hunter2@:bad")

    assert result.returncode == 78, result.stderr
    assert result.stderr.count("\n") == 1
    assert "setting mongodb.uri is not a usable MongoDB URI: Port" in _last_line(result)
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("mongodb://:bad", "setting mongodb.uri is not a usable MongoDB URI: Port"),
        ("notascheme://x", "setting mongodb.uri must start with mongodb://"),
        ("mongodb://u:hunter2@localhost:99999", "setting mongodb.uri is not a usable MongoDB URI"),
    ],
)
def test_each_kind_of_bad_uri_is_named(tmp_path: Path, uri: str, words: str) -> None:
    result = _cli(tmp_path, "run", mongodb__uri=uri)

    assert result.returncode == 78, result.stderr
    assert words in _last_line(result)
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("name", ["a.b", "with space", "x" * 64, "$x"])
def test_an_invalid_database_name_is_one_line_with_exit_78(tmp_path: Path, name: str) -> None:
    result = _cli(tmp_path, "status", "abc", mongodb__database=name)

    assert result.returncode == 78
    assert "setting mongodb.database" in _last_line(result)


@pytest.mark.parametrize("command", COMMANDS[2:], ids=lambda c: " ".join(c[:2]))
def test_an_unreachable_database_is_one_line_with_exit_69(
    tmp_path: Path, command: list[str]
) -> None:
    result = _cli(tmp_path, *command, mongodb__uri="mongodb://127.0.0.1:9")

    assert result.returncode == 69, result.stderr
    assert result.stderr.count("\n") == 1
    assert "database unavailable" in _last_line(result)
    assert "mongodb.timeout_seconds" in _last_line(result)


def test_cron_mode_gives_up_on_an_unreachable_database_with_exit_69(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _cli(tmp_path, "run", "--until-idle", mongodb__uri="mongodb://127.0.0.1:9")

    assert result.returncode == 69, result.stderr
    assert "gave up" in _last_line(result)
    assert "daemon.gave_up" in result.stderr
    assert time.monotonic() - started < 50


def test_authentication_failure_names_the_uri_as_configuration() -> None:
    refused = OperationFailure("Authentication failed.", 18, {"errmsg": "Authentication failed."})

    failure = failures.explain(refused, ["hunter2"])

    assert failure is not None and failure.config
    assert failure.line.startswith("setting mongodb.uri: the server refused its credentials")


@pytest.mark.parametrize(
    ("error", "config", "words"),
    [
        (InvalidURI("bad mongodb://u:hunter2@h"), True, "mongodb.uri"),
        (ValueError("Port must be an integer"), True, "mongodb.uri"),
        (InvalidName("database names cannot contain the character '.'"), True, "mongodb.database"),
        (OperationFailure("Invalid namespace", 73), True, "mongodb.database"),
        (OperationFailure("not authorized on x", 13), True, "may not do this"),
        (ServerSelectionTimeoutError("127.0.0.1:9: refused"), False, "timeout_seconds"),
        (NetworkTimeout("timed out"), False, "database unavailable: NetworkTimeout"),
        (OperationFailure("boom", 2), False, "code 2"),
    ],
)
def test_every_database_failure_is_explained_without_secrets(
    error: Exception, config: bool, words: str
) -> None:
    failure = failures.explain(error, ["hunter2", "mongodb://u:hunter2@h"])

    assert failure is not None
    assert (failure.config, words in failure.line) == (config, True)
    assert "hunter2" not in failure.line and "\n" not in failure.line
