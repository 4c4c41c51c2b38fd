"""Settings: one object built at start-up from a TOML file and SMS_OUTBOX_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from jobs.errors import ConfigError
from jobs.keys import KeyRing
from scheduler.listeners import (
    MIN_TOKEN_CHARS,
    DashboardSettings,
    MetricsSettings,
    OptInSettings,
    WebhookSettings,
    WebSettings,
)
from scheduler.sections import (
    DispatchSettings,
    FlowrouteSettings,
    LogSettings,
    MongoSettings,
    QuietHoursSettings,
    ReceiptSettings,
    ReplySettings,
    SecuritySettings,
)

ENV_PREFIX = "SMS_OUTBOX_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
# The test suite's own variables (which server to start), not settings.
_SUITE_PREFIX = ENV_PREFIX + "FERRETDB"


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
