"""compose.yaml, which cannot run here (no container engine): its structure, settings and
commands are checked against the code they configure."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from scheduler.parser import build_parser
from scheduler.settings import load_settings, unknown_environment

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"


def _services() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services: dict[str, Any] = loaded["services"]
    return services


def test_compose_runs_mongodb_7_the_daemon_and_the_simulator_from_this_image() -> None:
    services = _services()
    assert services["mongo"]["image"] == "mongo:7"
    for name in ("daemon", "simulator", "cli"):
        assert services[name]["build"] == "."
    assert services["daemon"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    for name in ("daemon", "simulator", "cli"):
        command = services[name].get("command", ["status"])
        assert build_parser().parse_args(command).command == command[0]


def test_compose_settings_are_real_settings_that_point_at_its_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _services()
    env = {k: str(v) for k, v in services["daemon"]["environment"].items()}
    assert unknown_environment(env) == []
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(None, env)
    assert urlsplit(settings.mongodb.uri.get_secret_value()).hostname == "mongo"
    simulator = services["simulator"]["command"]
    base = urlsplit(settings.flowroute.base_url)
    assert (base.hostname, str(base.port)) == (
        "simulator",
        simulator[simulator.index("--port") + 1],
    )
    assert settings.webhooks.public_url is not None and settings.webhooks.listen is not None
    public = settings.webhooks.public_url.get_secret_value()
    assert simulator[simulator.index("--inbound-to") + 1] == public + "/inbound"
    assert urlsplit(public).port == int(settings.webhooks.listen.rsplit(":", 1)[1])
    cli = {k: str(v) for k, v in services["cli"]["environment"].items()}
    assert cli.items() <= env.items()  # the same database, account and keys as the daemon


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="needs docker-compose to validate the file"
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
