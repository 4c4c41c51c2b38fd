"""The daemon's sections of the settings: the database, the account, sending, quiet hours,
signing, receipts, replies and logging."""

from __future__ import annotations

import math
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from jobs.dispatch.inbound import DEFAULT_HELP, DEFAULT_START, DEFAULT_STOP
from jobs.model import DEFAULT_MAX_SEGMENTS
from jobs.rules.quiet_hours import Window, holds_everywhere
from jobs.rules.slots import auto_margin

# Characters MongoDB refuses in a database name (on any platform).
_BAD_DATABASE_CHARS = '/\\. "$*<>:|?\x00'
MAX_CONCURRENCY = 256
UNPACED_CONCURRENCY = 8  # `auto` with no rate limit: enough to hide a few hundred ms of latency


def read_secret_file(value: Any, path: Path | None, name: str) -> Any:
    """A `<name>_file` setting points at a file (a container secret) holding the value."""
    if path is None:
        return value
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{name}_file cannot be read ({str(path)!r}: {exc.strerror})") from None
    return SecretStr(text)


class MongoSettings(BaseModel):
    """`[mongodb]`: where the outbox lives. The URI may hold a password, so it is secret."""

    model_config = ConfigDict(extra="forbid")

    uri: SecretStr = SecretStr("mongodb://localhost:27017")
    uri_file: Path | None = None
    database: str = Field("sms_outbox", min_length=1)
    timeout_seconds: float = Field(5.0, gt=0)
    # How long one command may wait for the server's answer: a server that stops answering
    # fails the cycle (retried, and leases still expire) instead of freezing the daemon.
    reply_timeout_seconds: float = Field(60.0, gt=0)
    # What keeps two workers from sending one claim twice on a server whose find-and-modify is
    # not atomic: `auto` asks the server at start-up (see jobs/mongo/guard.py).
    send_guard: Literal["auto", "tickets", "none"] = "auto"

    @model_validator(mode="after")
    def _files(self) -> MongoSettings:
        self.uri = read_secret_file(self.uri, self.uri_file, "mongodb.uri")
        if not self.uri.get_secret_value().startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("mongodb.uri must start with mongodb:// or mongodb+srv://")
        bad = sorted(set(self.database) & set(_BAD_DATABASE_CHARS))
        if bad or len(self.database.encode("utf-8")) > 63:
            why = f"contains {''.join(bad)!r}" if bad else "is longer than 63 bytes"
            raise ValueError(f"mongodb.database {self.database!r} {why}, which MongoDB refuses")
        return self


class FlowrouteSettings(BaseModel):
    """`[flowroute]`: the account the daemon sends with, and how fast it may."""

    model_config = ConfigDict(extra="forbid")

    access_key: SecretStr | None = None
    access_key_file: Path | None = None
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None
    base_url: str = "https://api.flowroute.com"
    rate_per_second: int = Field(5, ge=0)
    timeout_seconds: float = Field(10.0, gt=0)
    # Older name of the receipt URL; webhooks.public_url replaces it (its "/dlr" is used).
    dlr_callback: SecretStr | None = None
    hold_probe_seconds: float = Field(30.0, gt=0)
    hold_probe_max_seconds: float = Field(600.0, gt=0)

    @model_validator(mode="after")
    def _files(self) -> FlowrouteSettings:
        self.access_key = read_secret_file(
            self.access_key, self.access_key_file, "flowroute.access_key"
        )
        self.secret_key = read_secret_file(
            self.secret_key, self.secret_key_file, "flowroute.secret_key"
        )
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("flowroute.base_url must start with http:// or https://")
        if self.hold_probe_max_seconds < self.hold_probe_seconds:
            raise ValueError("flowroute.hold_probe_max_seconds must be at least hold_probe_seconds")
        return self


class DispatchSettings(BaseModel):
    """`[dispatch]`: how the daemon claims and retries."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(10, ge=1, le=1000)
    poll_seconds: float = Field(0.5, gt=0)
    lease_seconds: float = Field(120.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    max_segments: int = Field(DEFAULT_MAX_SEGMENTS, ge=1, le=100)
    pacing: Literal["fleet", "local"] = "fleet"
    # Slack per window for requests that reach Flowroute late; `auto` grows with the rate.
    pacing_margin_ms: Literal["auto"] | Annotated[float, Field(gt=0, lt=500)] = "auto"
    # Sends in flight at once; `auto` fills rate_per_second at 1 s of Flowroute latency.
    concurrency: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = "auto"

    def margin_seconds(self, rate: int) -> float:
        """`pacing_margin_ms` in seconds; `auto` is `jobs.rules.slots.auto_margin`."""
        if self.pacing_margin_ms == "auto":
            return auto_margin(rate)
        return self.pacing_margin_ms / 1000

    def sends_in_flight(self, rate: float | None) -> int:
        """`concurrency` as a number: `auto` keeps one second of the limit in flight (a fixed
        number when sending is not paced)."""
        if self.concurrency != "auto":
            return self.concurrency
        if not rate:
            return UNPACED_CONCURRENCY
        return max(1, min(MAX_CONCURRENCY, math.ceil(rate)))


class QuietHoursSettings(BaseModel):
    """`[quiet_hours]`: texts go out only inside this window of the recipient's local time."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    start: time = time(8, 0)
    end: time = time(21, 0)

    @model_validator(mode="after")
    def _order(self) -> QuietHoursSettings:
        if self.start >= self.end:
            raise ValueError("quiet_hours.start must be earlier than quiet_hours.end")
        if self.enabled and not holds_everywhere(Window(self.start, self.end)):
            raise ValueError(
                f"quiet_hours.start/end: {self.start:%H:%M}-{self.end:%H:%M} is never open in"
                " every US time zone at once (Puerto Rico to Hawaii spans 6 hours), so numbers"
                " whose zone is unknown, such as toll-free ones, could never be texted;"
                " make the window longer than 6 hours"
            )
        return self

    def window(self) -> Window | None:
        return Window(self.start, self.end) if self.enabled else None


class SecuritySettings(BaseModel):
    """`[security]`: who may get a message sent, and what may be sent."""

    model_config = ConfigDict(extra="forbid")

    require_signatures: bool = True
    keys_dir: Path = Path("~/.sms-outbox/keys")
    signing_keys: dict[str, SecretStr] = Field(default_factory=dict)
    daemon_key: SecretStr | None = None


class ReceiptSettings(BaseModel):
    """`[receipts]`: polling for receipts that did not come, and settling in-doubt sends."""

    model_config = ConfigDict(extra="forbid")

    check_seconds: float = Field(30.0, gt=0)
    poll_after_seconds: float = Field(300.0, ge=0)
    poll_horizon_seconds: float = Field(172800.0, gt=0)
    reconcile_after_seconds: float = Field(300.0, ge=0)
    clock_skew_seconds: float = Field(120.0, ge=0)
    resend_within_seconds: float = Field(86400.0, ge=0)
    lookups_per_second: float = Field(2.0, gt=0, le=5)
    batch_size: int = Field(50, ge=1, le=1000)


class ReplySettings(BaseModel):
    """`[replies]`: the answers to STOP, HELP and START; `{program}` is replaced."""

    model_config = ConfigDict(extra="forbid")

    program: str = Field("sms-outbox", min_length=1, max_length=40)
    help_text: str = Field(DEFAULT_HELP, min_length=1, max_length=306)
    stop_text: str = Field(DEFAULT_STOP, min_length=1, max_length=306)
    start_text: str = Field(DEFAULT_START, min_length=1, max_length=306)
    help_interval_hours: float = Field(24.0, ge=0)
    optout_warn_rate: float = Field(0.05, gt=0, le=1)


class LogSettings(BaseModel):
    """`[logging]`: `auto` writes JSON unless the output is a terminal."""

    model_config = ConfigDict(extra="forbid")

    level: str = Field("info", pattern="^(debug|info|warning|error)$")
    format: str = Field("auto", pattern="^(auto|json|console)$")
    # Phone numbers in log events show only their last four digits; false logs them whole.
    mask_numbers: bool = True
