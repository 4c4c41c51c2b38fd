"""Why a test server could not be had or controlled."""

from __future__ import annotations

from pathlib import Path


class ServerUnavailableError(RuntimeError):
    """No MongoDB-compatible server could be started; the message says exactly why."""


class ServerNotControlledError(RuntimeError):
    """The test needs to stop or restart the server, but the server was given by MONGODB_URI."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, labelled with its path, for error messages."""
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    return f"last {len(tail)} lines of {path}:\n" + "\n".join(tail)
