"""The web app's settings: what it refuses to start without, and when its cookie is Secure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs.errors import ConfigError
from jobs.keys import KeyRing
from jobs.webapp.config import WebConfig
from jobs.webapp.present import mask
from scheduler.settings import load_settings
from scheduler.surfaces.web_app import web_config

WEB = {
    "SMS_OUTBOX_WEB__ISSUER": "https://idp.example.org/",
    "SMS_OUTBOX_WEB__CLIENT_ID": "sms-outbox",
    "SMS_OUTBOX_WEB__CLIENT_SECRET": "client-secret",
    "SMS_OUTBOX_WEB__SESSION_SECRET": "s" * 32,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SMS_OUTBOX_"):
            monkeypatch.delenv(name)


def _config(public_url: str, host: str) -> WebConfig:
    return WebConfig(
        public_url=public_url, issuer="https://idp.example.org/", client_id="c",
        client_secret="x", session_secret="s" * 32, keyring=KeyRing(Path("/nonexistent")),
        listen_host=host,
    )  # fmt: skip


@pytest.mark.parametrize("missing", sorted(WEB))
def test_the_web_app_names_the_setting_it_lacks(
    missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in WEB.items():
        if name != missing:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=missing.removeprefix("SMS_OUTBOX_WEB__").lower()):
        web_config(load_settings(None, {}), "127.0.0.1:8000")


def test_a_short_session_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**WEB, "SMS_OUTBOX_WEB__SESSION_SECRET": "short"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(None, {})
    with pytest.raises(ConfigError, match="at least 32"):
        web_config(settings, "127.0.0.1:8000")


def test_secrets_can_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "client_secret"
    secret.write_text("from-a-file\n", encoding="utf-8")
    for name, value in WEB.items():
        if name != "SMS_OUTBOX_WEB__CLIENT_SECRET":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("SMS_OUTBOX_WEB__CLIENT_SECRET_FILE", str(secret))
    settings = load_settings(None, {})
    assert web_config(settings, "127.0.0.1:8000").client_secret == "from-a-file"
    assert "from-a-file" in settings.secrets()  # the log redactor hides it


def test_the_cookie_is_secure_unless_loopback_without_tls() -> None:
    assert not _config("http://127.0.0.1:8000", "127.0.0.1").secure_cookies
    assert not _config("http://localhost:8000", "::1").secure_cookies
    assert _config("http://10.0.0.5:8000", "0.0.0.0").secure_cookies
    assert _config("https://sms.example.org", "127.0.0.1").secure_cookies


def test_numbers_are_masked_but_their_last_four_digits() -> None:
    assert mask("12065550100") == "•••••••0100"
    assert mask(None) == "-"
