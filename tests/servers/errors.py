"""Why a test server could not be had or controlled."""

from __future__ import annotations


class ServerUnavailableError(RuntimeError):
    """No MongoDB-compatible server could be started; the message says exactly why."""


class ServerNotControlledError(RuntimeError):
    """The test needs to stop or restart the server, but the server was given by MONGODB_URI."""
