"""The sections of what listens: `[metrics]`, `[dashboard]`, `[web]`, `[webhooks]` and `[optin]`,
and the HOST:PORT addresses they listen on."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from jobs.errors import InputError
from jobs.rules import keywords, phone
from scheduler.sections import read_secret_file


def split_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) as a host and a port; raises ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


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
        self.token = read_secret_file(self.token, self.token_file, "dashboard.token")
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
        self.client_secret = read_secret_file(
            self.client_secret, self.client_secret_file, "web.client_secret"
        )
        self.session_secret = read_secret_file(
            self.session_secret, self.session_secret_file, "web.session_secret"
        )
        self.read_token = read_secret_file(self.read_token, self.read_token_file, "web.read_token")
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
