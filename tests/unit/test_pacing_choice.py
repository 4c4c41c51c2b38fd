"""The daemon paces with the fleet by default, alone when told to, and not at all at rate 0."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pymongo.database import Database

from jobs.doubles.clock import ManualClock
from jobs.errors import ConfigError
from jobs.mongo.connection import Doc
from jobs.mongo.fleet_pacing import FleetPacer
from jobs.pacing import SlidingWindowPacer
from jobs.rules.slots import account_id
from scheduler.settings import load_settings
from scheduler.wiring import build_pacer


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SMS_OUTBOX_"):
            monkeypatch.delenv(name)


def settings_from(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sms-outbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_fleet_pacing_is_the_default_and_names_the_account_by_a_hash(
    tmp_path: Path, db: Database[Doc]
) -> None:
    path = settings_from(
        tmp_path, '[flowroute]\naccess_key = "ak-1"\nsecret_key = "sk-1"\n[dispatch]\n'
    )
    settings = load_settings(path, {})

    pacer = build_pacer(settings, db, ManualClock())

    assert isinstance(pacer, FleetPacer)
    assert pacer.account == account_id("https://api.flowroute.com", "ak-1")
    assert pacer.plan.rate == 5
    assert pacer.plan.margin == pytest.approx(0.025)


@pytest.mark.parametrize(
    ("rate", "margin"), [(1, 0.025), (5, 0.025), (10, 0.025), (30, 0.0375), (50, 0.05), (500, 0.05)]
)
def test_the_auto_margin_grows_with_the_rate_from_25_to_50_ms(
    tmp_path: Path, db: Database[Doc], rate: int, margin: float
) -> None:
    text = f"[flowroute]\nrate_per_second = {rate}\n"
    settings = load_settings(settings_from(tmp_path, text), {})

    pacer = build_pacer(settings, db, ManualClock())

    assert isinstance(pacer, FleetPacer)
    assert pacer.plan.margin == pytest.approx(margin)


def test_margin_comes_from_the_settings(tmp_path: Path, db: Database[Doc]) -> None:
    settings = load_settings(settings_from(tmp_path, "[dispatch]\npacing_margin_ms = 80\n"), {})

    pacer = build_pacer(settings, db, ManualClock())

    assert isinstance(pacer, FleetPacer)
    assert pacer.plan.margin == pytest.approx(0.08)


@pytest.mark.parametrize(
    "text", ['[dispatch]\npacing = "local"\n', "[flowroute]\nrate_per_second = 0\n"]
)
def test_local_or_no_pacing_stays_in_the_process(
    tmp_path: Path, db: Database[Doc], text: str
) -> None:
    settings = load_settings(settings_from(tmp_path, text), {})

    pacer = build_pacer(settings, db, ManualClock())

    assert isinstance(pacer, SlidingWindowPacer)


def test_an_unknown_pacing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dispatch\.pacing"):
        load_settings(settings_from(tmp_path, '[dispatch]\npacing = "global"\n'), {})
