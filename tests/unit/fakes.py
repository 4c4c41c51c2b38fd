"""Test doubles for the send cycle's ports (a scripted SMS provider, a counting pacer) and the
numbers the seeded directory knows."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import timedelta

from jobs.errors import ProviderError

SENDER = "12065550100"
OTHER_SENDER = "12065550101"
RECIPIENT = "13125550199"
RECIPIENT_2 = "13125550142"
UNVERIFIED = "13125550123"
# A valid number that is in no directory.
UNKNOWN = "13125550177"
# What the dispatcher fixture is configured with.
LEASE = timedelta(seconds=120)
MAX_ATTEMPTS = 3


class FakeProvider:
    """An SmsProvider that accepts every send, except those scripted to raise an error."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.accepted: dict[str, tuple[str, str, str]] = {}
        self.on_send: Callable[[], None] | None = None
        self._script: deque[ProviderError] = deque()

    def fail_next(self, *errors: ProviderError) -> None:
        """Answer the next sends with these errors, in order."""
        self._script.extend(errors)

    def send(self, to: str, source: str, body: str) -> str:
        self.calls.append((to, source, body))
        if self.on_send is not None:
            self.on_send()
        if self._script:
            raise self._script.popleft()
        provider_id = f"mdr2-{len(self.calls):032x}"
        self.accepted[provider_id] = (to, source, body)
        return provider_id

    def recipients(self) -> list[str]:
        """The `to` of every send attempt, in order."""
        return [to for to, _, _ in self.calls]


class CountingPacer:
    """A Pacer that never waits and counts how it was used."""

    def __init__(self) -> None:
        self.acquired = 0
        self.penalties = 0

    def acquire(self) -> None:
        self.acquired += 1

    def penalize(self) -> None:
        self.penalties += 1
