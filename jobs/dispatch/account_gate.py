"""The account gate: one daemon's view of the account hold. While Flowroute refuses the account,
nothing is sent and messages wait, attempt refunded; a probe (the next message, once the hold's
backoff has passed, or at once after a restart) finds out whether it works again."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog

from jobs.clock import Clock
from jobs.errors import ProviderError
from jobs.model import Problem, Reason
from jobs.ports import AccountHolds
from jobs.rules.hold import Hold

log = structlog.get_logger("sms_outbox.account")
LOG_EVERY_SECONDS = 60.0
# How often the shared hold is read; a daemon's own refusal and success update it at once.
READ_EVERY_SECONDS = 5.0


class AccountGate:
    """Whether this daemon may send now, and what a refusal or an acceptance changes."""

    def __init__(self, holds: AccountHolds, clock: Clock) -> None:
        self.holds = holds
        self.clock = clock
        self._held: Hold | None = None
        self._started = False
        self._logged_at: float | None = None
        self._read_at: float | None = None

    def refresh(self) -> None:
        """Read the shared hold, at most every READ_EVERY_SECONDS. A daemon just started probes
        at once: it may have been restarted with a fixed secret."""
        now = self.clock.monotonic()
        if self._read_at is not None and now - self._read_at < READ_EVERY_SECONDS:
            return
        self._read_at = now
        held = self.holds.current()
        if held is not None and not self._started:
            held = replace(held, probe_at=min(held.probe_at, self.clock.now()))
        self._started = True
        self._held = held

    def waiting(self) -> datetime | None:
        """While the account is held and the next probe is not due, when it is; else None."""
        held = self._held
        if held is None or held.probe_at <= self.clock.now():
            return None
        self._log(held, "account.held")
        return held.probe_at

    def problem(self) -> Problem:
        """Why a message waits: the refusal that holds the account, and the next probe."""
        held = self._held
        assert held is not None
        detail = (
            f"Flowroute refuses the account ({held.code}: {held.detail}); nothing is sent until"
            f" a probe at {held.probe_at.isoformat()} or later succeeds"
        )
        return Problem(Reason.ACCOUNT_HELD, detail, held.code)

    def refused(self, error: ProviderError) -> None:
        """Flowroute refused the account: hold it for every daemon until the next probe."""
        detail = error.detail if isinstance(error.detail, str) else repr(error.detail)
        self._held = self.holds.hold(error.code, detail)
        self._logged_at = None
        self._log(self._held, "account.held")

    def accepted(self) -> None:
        """A send went through: a hold this daemon knew of is over."""
        if self._held is not None:
            held, self._held = self._held, None
            self.holds.release()
            log.warning("account.resumed", held_since=held.since.isoformat(), code=held.code)

    def _log(self, held: Hold, event: str) -> None:
        now = self.clock.monotonic()
        if self._logged_at is not None and now - self._logged_at < LOG_EVERY_SECONDS:
            return
        self._logged_at = now
        log.error(
            event,
            code=held.code,
            detail=held.detail,
            since=held.since.isoformat(),
            probe_at=held.probe_at.isoformat(),
            hint="check flowroute.access_key and secret_key, and the numbers the account owns",
        )
