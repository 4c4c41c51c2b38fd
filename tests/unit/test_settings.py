"""Settings: a TOML file, SMS_OUTBOX_* overrides, secrets from files, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobs.errors import ConfigError
from scheduler.sections import DispatchSettings
from scheduler.settings import load_settings, unknown_environment

ACCESS = "ak-3d1f0a9b"
SECRET = "sk-51c7e2aa90"
DB_PASSWORD = "pw-9e8d7c6b"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SMS_OUTBOX_"):
            monkeypatch.delenv(name)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sms-outbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path | None) -> str:
    with pytest.raises(ConfigError) as refused:
        load_settings(path, {})
    message = str(refused.value)
    assert "\n" not in message
    return message


def test_defaults_apply_without_a_file() -> None:
    settings = load_settings(None, {})

    assert (settings.flowroute.rate_per_second, settings.dispatch.batch_size) == (5, 10)
    assert settings.flowroute.base_url == "https://api.flowroute.com"


def test_the_send_guard_is_chosen_by_the_server_unless_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(None, {}).mongodb.send_guard == "auto"
    path = config(tmp_path, '[mongodb]\nsend_guard = "none"\n')
    assert load_settings(path, {}).mongodb.send_guard == "none"
    monkeypatch.setenv("SMS_OUTBOX_MONGODB__SEND_GUARD", "tickets")
    assert load_settings(path, {}).mongodb.send_guard == "tickets"


def test_values_come_from_the_file(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        '[flowroute]\nrate_per_second = 3\nbase_url = "http://127.0.0.1:9"\n'
        "[dispatch]\nbatch_size = 25\nmax_attempts = 7\n"
        '[mongodb]\ndatabase = "texts"\n',
    )

    settings = load_settings(path, {})

    assert settings.flowroute.rate_per_second == 3
    assert settings.flowroute.base_url == "http://127.0.0.1:9"
    assert (settings.dispatch.batch_size, settings.dispatch.max_attempts) == (25, 7)
    assert settings.mongodb.database == "texts"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = config(tmp_path, "[flowroute]\nrate_per_second = 3\n[dispatch]\nbatch_size = 25\n")
    monkeypatch.setenv("SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND", "7")
    monkeypatch.setenv("SMS_OUTBOX_DISPATCH__LEASE_SECONDS", "30.5")

    settings = load_settings(path, {})

    assert settings.flowroute.rate_per_second == 7
    assert settings.dispatch.lease_seconds == 30.5
    assert settings.dispatch.batch_size == 25


def test_config_path_can_come_from_the_environment(tmp_path: Path) -> None:
    path = config(tmp_path, "[dispatch]\nbatch_size = 42\n")

    settings = load_settings(None, {"SMS_OUTBOX_CONFIG": str(path)})

    assert settings.dispatch.batch_size == 42


def test_secrets_are_read_from_files(tmp_path: Path) -> None:
    (tmp_path / "access").write_text(ACCESS + "\n", encoding="utf-8")
    (tmp_path / "secret").write_text(f"  {SECRET}\n", encoding="utf-8")
    (tmp_path / "uri").write_text(f"mongodb://app:{DB_PASSWORD}@db:27017\n", encoding="utf-8")
    path = config(
        tmp_path,
        f'[flowroute]\naccess_key_file = "{tmp_path / "access"}"\n'
        f'secret_key_file = "{tmp_path / "secret"}"\n'
        f'[mongodb]\nuri_file = "{tmp_path / "uri"}"\n',
    )

    settings = load_settings(path, {})

    access, secret = settings.require_flowroute()
    assert (access.get_secret_value(), secret.get_secret_value()) == (ACCESS, SECRET)
    assert settings.mongodb.uri.get_secret_value() == f"mongodb://app:{DB_PASSWORD}@db:27017"
    assert {ACCESS, SECRET, DB_PASSWORD} <= set(settings.secrets())


def test_secret_file_from_the_environment_overrides_an_inline_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret").write_text(SECRET, encoding="utf-8")
    path = config(tmp_path, '[flowroute]\naccess_key = "inline"\nsecret_key = "inline"\n')
    monkeypatch.setenv("SMS_OUTBOX_FLOWROUTE__SECRET_KEY_FILE", str(tmp_path / "secret"))

    settings = load_settings(path, {})

    assert settings.require_flowroute()[1].get_secret_value() == SECRET


def test_unreadable_secret_file_names_the_setting(tmp_path: Path) -> None:
    path = config(tmp_path, f'[flowroute]\nsecret_key_file = "{tmp_path / "missing"}"\n')

    message = refusal(path)

    assert "flowroute" in message
    assert "secret_key_file" in message


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("[dispatch]\nbatch_size = 0\n", "dispatch.batch_size"),
        ("[dispatch]\nbatch_size = 1001\n", "dispatch.batch_size"),
        ('[dispatch]\nmax_attempts = "many"\n', "dispatch.max_attempts"),
        ("[flowroute]\nrate_per_second = -1\n", "flowroute.rate_per_second"),
        ("[flowroute]\ntimeout_seconds = 0\n", "flowroute.timeout_seconds"),
        ('[logging]\nlevel = "loud"\n', "logging.level"),
        ('[mongodb]\ndatabase = ""\n', "mongodb.database"),
        ('[mongodb]\nsend_guard = "maybe"\n', "mongodb.send_guard"),
    ],
)
def test_invalid_value_is_one_line_naming_the_setting(tmp_path: Path, text: str, name: str) -> None:
    message = refusal(config(tmp_path, text))

    assert f"setting {name}:" in message


def test_invalid_environment_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_OUTBOX_DISPATCH__BATCH_SIZE", "lots")

    assert "setting dispatch.batch_size:" in refusal(None)


def test_every_bad_setting_is_named_on_the_one_line(tmp_path: Path) -> None:
    message = refusal(config(tmp_path, "[dispatch]\nbatch_size = 0\nmax_attempts = 0\n"))

    assert "dispatch.batch_size" in message
    assert "dispatch.max_attempts" in message


def test_bad_base_url_is_refused(tmp_path: Path) -> None:
    message = refusal(config(tmp_path, '[flowroute]\nbase_url = "api.flowroute.com"\n'))

    assert "base_url must start with http:// or https://" in message


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    message = refusal(config(tmp_path, "[dispatcher]\nbatch_size = 5\n"))

    assert "setting dispatcher:" in message


def test_unknown_key_in_a_section_is_refused(tmp_path: Path) -> None:
    message = refusal(config(tmp_path, "[dispatch]\nbatch_sise = 5\n"))

    assert "dispatch.batch_sise" in message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path / "nowhere.toml")

    assert "nowhere.toml" in message
    assert "does not exist" in message


def test_missing_file_named_by_the_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(None, {"SMS_OUTBOX_CONFIG": str(tmp_path / "nowhere.toml")})


def test_malformed_toml_is_refused(tmp_path: Path) -> None:
    message = refusal(config(tmp_path, "[dispatch\nbatch_size = \n"))

    assert "not valid TOML" in message


def test_missing_account_keys_name_the_setting() -> None:
    settings = load_settings(None, {})

    with pytest.raises(ConfigError, match=r"flowroute\.access_key"):
        settings.require_flowroute()


def test_secrets_are_not_shown_in_the_settings_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(
        tmp_path,
        f'[flowroute]\naccess_key = "{ACCESS}"\nsecret_key = "{SECRET}"\n'
        f'[mongodb]\nuri = "mongodb://app:{DB_PASSWORD}@db:27017"\n',
    )

    settings = load_settings(path, {})

    for text in (repr(settings), str(settings), repr(settings.flowroute), repr(settings.mongodb)):
        for secret in (ACCESS, SECRET, DB_PASSWORD):
            assert secret not in text
    assert settings.require_flowroute()[1].get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("start", "end"), [("09:00", "10:00"), ("09:00", "14:00"), ("09:00", "15:00")]
)
def test_a_quiet_hours_window_that_is_never_open_everywhere_is_refused(
    tmp_path: Path, start: str, end: str
) -> None:
    path = config(tmp_path, f'[quiet_hours]\nstart = "{start}"\nend = "{end}"\n')

    message = refusal(path)

    assert message.startswith("setting quiet_hours.start/end:")
    assert "longer than 6 hours" in message


def test_a_narrow_window_is_accepted_when_quiet_hours_are_off(tmp_path: Path) -> None:
    path = config(tmp_path, '[quiet_hours]\nenabled = false\nstart = "09:00"\nend = "10:00"\n')

    assert load_settings(path, {}).quiet_hours.window() is None


def test_a_window_just_longer_than_the_zones_spread_is_accepted(tmp_path: Path) -> None:
    path = config(tmp_path, '[quiet_hours]\nstart = "09:00"\nend = "15:01"\n')

    assert load_settings(path, {}).quiet_hours.end.minute == 1


TOKEN_URL = "https://sms.example.org/hooks/7f3c0a9b1d2e4f5a6b7c"


def test_webhooks_come_from_the_environment_and_receipts_go_to_public_url_dlr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMS_OUTBOX_WEBHOOKS__LISTEN", "127.0.0.1:8080")
    monkeypatch.setenv("SMS_OUTBOX_WEBHOOKS__PUBLIC_URL", TOKEN_URL + "/")
    settings = load_settings(None, {})
    assert settings.webhooks.listen == "127.0.0.1:8080"
    assert settings.dlr_callback() == TOKEN_URL + "/dlr"
    assert TOKEN_URL + "/" in settings.secrets()
    assert "/hooks/7f3c0a9b1d2e4f5a6b7c/" in settings.secrets()


def test_the_older_dlr_callback_setting_is_an_alias(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, '[flowroute]\ndlr_callback = "https://x/d"\n'), {})
    assert settings.dlr_callback() == "https://x/d"
    assert load_settings(None, {}).dlr_callback() is None


@pytest.mark.parametrize(
    "text",
    [
        '[webhooks]\npublic_url = "https://sms.example.org/hooks"\n',
        '[webhooks]\npublic_url = "ftp://sms.example.org/hooks/7f3c0a9b1d2e4f5a6b7c"\n',
        '[webhooks]\nlisten = "0.0.0.0:8080"\n',
    ],
)
def test_a_public_url_without_a_secret_path_or_a_listener_without_one_is_refused(
    tmp_path: Path, text: str
) -> None:
    message = refusal(config(tmp_path, text))
    assert "webhooks." in message
    assert "7f3c0a9b1d2e4f5a6b7c" not in message


def test_concurrency_auto_keeps_one_second_of_the_limit_in_flight() -> None:
    auto = DispatchSettings()
    assert (auto.sends_in_flight(5), auto.sends_in_flight(50)) == (5, 50)
    assert auto.sends_in_flight(None) == auto.sends_in_flight(0) >= 2
    assert DispatchSettings(concurrency=3).sends_in_flight(50) == 3
    with pytest.raises(ValidationError):
        DispatchSettings(concurrency=0)


def test_environment_names_that_name_no_setting_section_are_found() -> None:
    environ = {
        "SMS_OUTBOX_FLOWRUOTE__BASE_URL": "http://x",  # a typo in the section
        "SMS_OUTBOX_FLOWROUTE_BASE_URL": "http://x",  # one underscore where two belong
        "SMS_OUTBOX_FLOWROUTE__BASE_URL": "http://x",
        "sms_outbox_quiet_hours__enabled": "false",  # names are not case sensitive
        "SMS_OUTBOX_CONFIG": "x.toml",
        "SMS_OUTBOX_FERRETDB_BACKEND": "sqlite",  # the test suite's own
        "HOME": "/root",
    }
    assert unknown_environment(environ) == [
        "SMS_OUTBOX_FLOWROUTE_BASE_URL", "SMS_OUTBOX_FLOWRUOTE__BASE_URL",
    ]  # fmt: skip
