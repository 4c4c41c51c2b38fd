"""Operational events the daemon counts: one small interface, a no-op unless a sink is installed.

The send cycle calls these functions where something worth counting happens; the daemon installs
a Prometheus-backed sink when `[metrics] listen` is set. Labels are small closed vocabularies
(an HTTP outcome class, a state, a reason), never a phone number or a message id.
"""

from __future__ import annotations

from typing import Protocol

from jobs.clock import Clock
from jobs.errors import ProviderError, RetryableError, ThrottledError, UnknownOutcomeError
from jobs.flowroute import SmsProvider
from jobs.pacing import Pacer


class Sink(Protocol):
    """Receives counted events and observed durations."""

    def count(self, event: str, amount: float = 1.0, **labels: str) -> None: ...

    def observe(self, event: str, value: float, **labels: str) -> None: ...


class NoSink:
    """The default: events go nowhere, so unit tests and the demo need nothing."""

    def count(self, event: str, amount: float = 1.0, **labels: str) -> None:
        return None

    def observe(self, event: str, value: float, **labels: str) -> None:
        return None


_sink: Sink = NoSink()


def install(sink: Sink | None) -> Sink:
    """Send every later event to `sink` (None restores the no-op); returns the previous sink."""
    global _sink
    previous, _sink = _sink, sink or NoSink()
    return previous


def send_outcome(error: ProviderError | None) -> str:
    """The outcome class of one send: 202, 429, 4xx, 5xx or timeout (no answer came)."""
    if error is None:
        return "202"
    if isinstance(error, ThrottledError):
        return "429"
    if isinstance(error, UnknownOutcomeError):
        return "timeout"
    if isinstance(error, RetryableError):
        return "5xx" if error.status is not None else "connect_error"
    return "4xx"


def sent(error: ProviderError | None, seconds: float) -> None:
    """One request to Flowroute finished (`error` None: accepted) after `seconds`."""
    outcome = send_outcome(error)
    _sink.count("sends", outcome=outcome)
    _sink.observe("send_seconds", seconds, outcome=outcome)


def paced(seconds: float) -> None:
    """The pacer held a send back for `seconds` to stay under the account's rate."""
    if seconds > 0:
        _sink.count("pacing_waits")
        _sink.observe("pacing_wait_seconds", seconds)


def claim_lost() -> None:
    """Another worker took over a claim this one still held."""
    _sink.count("claim_losses")


def database_unavailable(during: str) -> None:
    """The database could not be reached (`during`: "cycle" or "record")."""
    _sink.count("database_outages", during=during)


def opted_out(via: str) -> None:
    """A recipient opted out (`via`: how it was learned, e.g. "flowroute_1110", "stop")."""
    _sink.count("opt_outs", via=via)


def receipt(state: str) -> None:
    """A delivery receipt settled a message in `state` (delivered, undelivered, expired)."""
    _sink.count("receipts", state=state)


def optin(event: str) -> None:
    """A sign-up step: a code sent, a number verified, a refusal by reason, codes paused."""
    _sink.count("optin", step=event)


class MeteredProvider:
    """An SmsProvider that reports each request's outcome and latency."""

    def __init__(self, provider: SmsProvider, clock: Clock) -> None:
        self.provider = provider
        self.clock = clock

    def send(self, to: str, source: str, body: str) -> str:
        start = self.clock.monotonic()
        try:
            provider_id = self.provider.send(to, source, body)
        except ProviderError as error:
            sent(error, self.clock.monotonic() - start)
            raise
        sent(None, self.clock.monotonic() - start)
        return provider_id


class MeteredPacer:
    """A Pacer that reports how long each send was held back."""

    def __init__(self, pacer: Pacer, clock: Clock) -> None:
        self.pacer = pacer
        self.clock = clock

    def acquire(self) -> None:
        start = self.clock.monotonic()
        self.pacer.acquire()
        paced(self.clock.monotonic() - start)

    def penalize(self) -> None:
        self.pacer.penalize()
