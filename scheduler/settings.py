"""Settings: one object built at start-up from a TOML file and SMS_OUTBOX_* variables."""

from __future__ import annotations

import math
from datetime import time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from jobs.dispatch.inbound import DEFAULT_HELP, DEFAULT_START, DEFAULT_STOP
from jobs.errors import ConfigError, InputError
from jobs.keys import KeyRing
from jobs.model import DEFAULT_MAX_SEGMENTS
from jobs.rules import keywords, phone
from jobs.rules.quiet_hours import Window, holds_everywhere
from jobs.rules.slots import DEFAULT_MARGIN_SECONDS
from scheduler.surfaces.web import split_listen

ENV_PREFIX = "SMS_OUTBOX_"
# Characters MongoDB refuses in a database name (on any platform).
_BAD_DATABASE_CHARS = '/\\. "$*<>:|?\x00'
CONFIG_ENV = ENV_PREFIX + "CONFIG"
MAX_CONCURRENCY = 256
UNPACED_CONCURRENCY = 8  # `auto` with no rate limit: enough to hide a few hundred ms of latency
# The test suite's own variables (which server to start), not settings.
_SUITE_PREFIX = ENV_PREFIX + "FERRETDB"


def _read_secret_file(value: Any, path: Path | None, name: str) -> Any:
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
        self.uri = _read_secret_file(self.uri, self.uri_file, "mongodb.uri")
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
        self.access_key = _read_secret_file(
            self.access_key, self.access_key_file, "flowroute.access_key"
        )
        self.secret_key = _read_secret_file(
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
    pacing_margin_ms: float = Field(DEFAULT_MARGIN_SECONDS * 1000, gt=0, lt=500)
    # Sends in flight at once; `auto` fills rate_per_second at 1 s of Flowroute latency.
    concurrency: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = "auto"

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


def _check_listen(value: str | None, name: str) -> None:
    if value is not None:
        try:
            split_listen(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


class MetricsSettings(BaseModel):
    """`[metrics]`: where `run` serves /metrics, /healthz and /readyz; off unless set."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = None
    # /healthz answers 503 after this many failed cycles in a row, or when no cycle has
    # completed for this long (a failed cycle ends but completes nothing).
    unhealthy_after_failed_cycles: int = Field(3, ge=1)
    unhealthy_after_seconds: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _listen(self) -> MetricsSettings:
        _check_listen(self.listen, "metrics.listen")
        return self


class DashboardSettings(BaseModel):
    """`[dashboard]`: the read-only web page; every request must carry `token`."""

    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:8090"
    token: SecretStr | None = None
    token_file: Path | None = None
    refresh_seconds: int = Field(10, ge=1, le=3600)

    @model_validator(mode="after")
    def _check(self) -> DashboardSettings:
        _check_listen(self.listen, "dashboard.listen")
        self.token = _read_secret_file(self.token, self.token_file, "dashboard.token")
        return self


class WebSettings(BaseModel):
    """`[web]`: the web app (`sms-outbox web`): OpenID Connect sign-in, pages and a JSON API."""

    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:8000"
    # Where browsers reach the app; the callback is <public_url>/callback.
    public_url: str = "http://127.0.0.1:8000"
    issuer: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    session_secret: SecretStr | None = None
    session_secret_file: Path | None = None
    # The ID-token (and access-token) claim whose value is the user id in `authorized`.
    user_claim: str = Field("sub", min_length=1)
    viewers: list[str] = Field(default_factory=list)
    admins: list[str] = Field(default_factory=list)
    # The `aud` that access tokens for the JSON API must carry; no API without it.
    api_audience: str | None = None
    # A read-only token for machines, sent as `Authorization: Bearer ...` to /campaigns.json.
    read_token: SecretStr | None = None
    read_token_file: Path | None = None
    broadcasts_per_hour: int = Field(5, ge=0)
    price_per_segment: float = Field(0.0, ge=0)
    currency: str = Field("USD", max_length=8)

    @model_validator(mode="after")
    def _check(self) -> WebSettings:
        _check_listen(self.listen, "web.listen")
        for name in ("public_url", "issuer"):
            value = getattr(self, name)
            if value is not None:
                parts = urlsplit(value)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise ValueError(f"web.{name} must be an http:// or https:// URL")
        self.client_secret = _read_secret_file(
            self.client_secret, self.client_secret_file, "web.client_secret"
        )
        self.session_secret = _read_secret_file(
            self.session_secret, self.session_secret_file, "web.session_secret"
        )
        self.read_token = _read_secret_file(self.read_token, self.read_token_file, "web.read_token")
        return self


MIN_TOKEN_CHARS = 16


class WebhookSettings(BaseModel):
    """`[webhooks]`: the receiver of Flowroute's receipts and inbound messages."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = None
    # The URL Flowroute reaches; its path carries a secret token, so it is a secret itself.
    public_url: SecretStr | None = None
    max_body_bytes: int = Field(65536, ge=1024, le=10_000_000)
    # Idle or slow connections must not crowd out Flowroute's: many may be open at once, and
    # one that sends nothing for `channel_timeout_seconds` is closed.
    connection_limit: int = Field(1000, ge=10, le=10_000)
    channel_timeout_seconds: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _url(self) -> WebhookSettings:
        _check_listen(self.listen, "webhooks.listen")
        if self.public_url is not None:
            parts = urlsplit(self.public_url.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("webhooks.public_url must be an http:// or https:// URL")
            if len(parts.path.strip("/")) < MIN_TOKEN_CHARS or parts.query or parts.fragment:
                raise ValueError(
                    "webhooks.public_url must carry a secret token of at least"
                    f" {MIN_TOKEN_CHARS} characters in its path, and no query"
                )
        if self.listen is not None and self.public_url is None:
            raise ValueError("webhooks.listen needs webhooks.public_url (the path it serves)")
        return self


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


class OptInSettings(BaseModel):
    """`[optin]`: the public sign-up page (/join) and the JOIN keyword, with the program's
    terms as the page shows them and the limits against SMS pumping."""

    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:8091"
    # The reverse proxy in front of /join, whose X-Forwarded-For gives the client address.
    trusted_proxy: str | None = None
    program: str | None = Field(None, min_length=1, max_length=40)  # default: replies.program
    number: str | None = None  # the program number codes come from; default: the first granted
    description: str = Field("Alerts and updates", min_length=1, max_length=120)
    frequency: str = Field("Up to 4 msgs/month", min_length=1, max_length=60)
    help_stop: str = Field("Reply HELP for help, STOP to cancel.", min_length=1, max_length=80)
    rates: str = Field("Msg&data rates may apply.", min_length=1, max_length=60)
    terms_url: str | None = None
    privacy_url: str | None = None
    terms_version: str = Field("1", min_length=1, max_length=40)
    keywords: list[str] = Field(default_factory=lambda: ["join"], min_length=1)
    confirm_words: list[str] = Field(default_factory=lambda: ["yes"], min_length=1)
    regions: list[str] = Field(default_factory=lambda: ["US", "CA"], min_length=1)
    number_per_hour: int = Field(3, ge=1, le=100)
    number_per_day: int = Field(5, ge=1, le=1000)
    client_per_hour: int = Field(10, ge=1, le=10000)
    codes_per_hour: int = Field(200, ge=1)
    price_per_segment: float = Field(0.0079, ge=0)

    @model_validator(mode="after")
    def _check(self) -> OptInSettings:
        _check_listen(self.listen, "optin.listen")
        if self.number is not None:
            try:
                self.number = phone.normalize(self.number)
            except InputError as exc:
                raise ValueError(f"optin.number: {exc}") from None
        for name in ("terms_url", "privacy_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("https://", "http://")):
                raise ValueError(f"optin.{name} must be an http:// or https:// URL")
        self.keywords = [keywords.normalize(k) for k in self.keywords]
        self.confirm_words = [keywords.normalize(k) for k in self.confirm_words]
        return self


class LogSettings(BaseModel):
    """`[logging]`: `auto` writes JSON unless the output is a terminal."""

    model_config = ConfigDict(extra="forbid")

    level: str = Field("info", pattern="^(debug|info|warning|error)$")
    format: str = Field("auto", pattern="^(auto|json|console)$")
    # Phone numbers in log events show only their last four digits; false logs them whole.
    mask_numbers: bool = True


class Settings(BaseSettings):
    """Every setting; the environment overrides the file (SMS_OUTBOX_<SECTION>__<KEY>)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )
    toml_path: ClassVar[Path | None] = None

    mongodb: MongoSettings = MongoSettings()
    flowroute: FlowrouteSettings = FlowrouteSettings()
    dispatch: DispatchSettings = DispatchSettings()
    security: SecuritySettings = SecuritySettings()
    quiet_hours: QuietHoursSettings = QuietHoursSettings()
    webhooks: WebhookSettings = WebhookSettings()
    receipts: ReceiptSettings = ReceiptSettings()
    replies: ReplySettings = ReplySettings()
    logging: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    dashboard: DashboardSettings = DashboardSettings()
    web: WebSettings = WebSettings()
    optin: OptInSettings = OptInSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _lease_covers_a_batch(self) -> Settings:
        rate = self.flowroute.rate_per_second
        # A claimed message may wait for the workers ahead of it as well as for its batch.
        waiting = self.dispatch.batch_size + self.dispatch.sends_in_flight(rate)
        pacing = waiting / rate if rate else 0.0
        needed = pacing + self.flowroute.timeout_seconds
        if self.dispatch.lease_seconds <= needed:
            raise ValueError(
                f"dispatch.lease_seconds ({self.dispatch.lease_seconds:g}) must exceed the time to"
                f" pace a batch plus one send ({needed:g} s)"
            )
        return self

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor; the URI's password is one of them."""
        values = [self.mongodb.uri.get_secret_value()]
        values += [
            s.get_secret_value()
            for s in (self.flowroute.access_key, self.flowroute.secret_key)
            if s
        ]
        values += [key.get_secret_value() for key in self.security.signing_keys.values()]
        if self.security.daemon_key is not None:
            values.append(self.security.daemon_key.get_secret_value())
        if self.dashboard.token is not None:
            values.append(self.dashboard.token.get_secret_value())
        values += [
            s.get_secret_value()
            for s in (self.web.client_secret, self.web.session_secret, self.web.read_token)
            if s
        ]
        password = _uri_password(self.mongodb.uri.get_secret_value())
        for url in (self.webhooks.public_url, self.flowroute.dlr_callback):
            if url is not None:
                # The path's token alone is secret too: a log line may hold just a path.
                path = urlsplit(url.get_secret_value()).path
                values += [url.get_secret_value(), path if len(path) > MIN_TOKEN_CHARS else ""]
        return [v for v in [*values, password] if v and v.strip("/")]

    def dlr_callback(self) -> str | None:
        """Where Flowroute posts this installation's receipts: public_url + "/dlr", or the
        older flowroute.dlr_callback verbatim, or nowhere (receipts are then polled for)."""
        if self.webhooks.public_url is not None:
            return self.webhooks.public_url.get_secret_value().rstrip("/") + "/dlr"
        if self.flowroute.dlr_callback is not None:
            return self.flowroute.dlr_callback.get_secret_value() or None
        return None

    def require_flowroute(self) -> tuple[SecretStr, SecretStr]:
        """The account keys, or a ConfigError naming the missing one."""
        fr = self.flowroute
        if fr.access_key is None or not fr.access_key.get_secret_value():
            raise ConfigError(
                "setting flowroute.access_key is missing (or flowroute.access_key_file)"
            )
        if fr.secret_key is None or not fr.secret_key.get_secret_value():
            raise ConfigError(
                "setting flowroute.secret_key is missing (or flowroute.secret_key_file)"
            )
        return fr.access_key, fr.secret_key


def keyring(settings: Settings) -> KeyRing:
    """The signing keys the settings point at."""
    sec = settings.security
    daemon = sec.daemon_key.get_secret_value() if sec.daemon_key else None
    users = {user: key.get_secret_value() for user, key in sec.signing_keys.items()}
    return KeyRing(sec.keys_dir, users, daemon)


def _uri_password(uri: str) -> str | None:
    """The password in mongodb://user:password@host, if any."""
    rest = uri.split("://", 1)[-1]
    credentials = rest.split("@", 1)[0] if "@" in rest else ""
    return credentials.split(":", 1)[1] if ":" in credentials else None


def load_settings(config: Path | None, environ: dict[str, str]) -> Settings:
    """Build the Settings from `config` (or $SMS_OUTBOX_CONFIG) and the environment.

    Raises ConfigError with one line that names each bad setting.
    """
    path = config or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else None)
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    cls = type("FileSettings", (Settings,), {"toml_path": path})
    try:
        settings: Settings = cls()
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    except ValueError as exc:  # a TOML syntax error
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    return settings


def unknown_environment(environ: dict[str, str]) -> list[str]:
    """SMS_OUTBOX_* names that name no setting section (a typo such as SMS_OUTBOX_FLOWRUOTE__...),
    which pydantic-settings would silently ignore."""
    sections = set(Settings.model_fields)
    unknown = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        section, nested, _ = upper.removeprefix(ENV_PREFIX).partition("__")
        if not (nested and section.lower() in sections) and not upper.startswith(_SUITE_PREFIX):
            unknown.append(name)
    return sorted(unknown)


def _one_line(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == "value_error":  # our validators name the setting themselves
            parts.append("setting " + error["msg"].removeprefix("Value error, "))
            continue
        name = ".".join(str(p) for p in error["loc"])
        parts.append(f"setting {name}: {error['msg']}")
    return "; ".join(parts)
