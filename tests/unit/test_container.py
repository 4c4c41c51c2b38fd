"""The Docker image's contents, checked without a container engine: the wheel built from exactly
the files the Dockerfile copies installs into a fresh virtualenv and runs, without a `tests`
package; the image runs as non-root with its keys on a volume and has a HEALTHCHECK."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (keyword, arguments), continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _copied() -> list[tuple[str, str]]:
    """(source, destination) of each COPY, destinations relative to WORKDIR."""
    pairs = []
    for keyword, rest in _instructions():
        if keyword == "COPY":
            *sources, target = shlex.split(rest)
            for source in sources:
                name = Path(source).name if target.endswith("/") or target == "./" else target
                pairs.append((source, name.removeprefix("./")))
    return pairs


def test_the_image_runs_as_non_root_with_keys_on_a_volume_and_a_healthcheck() -> None:
    steps = dict(_instructions())
    assert steps["USER"].split(":")[0] not in ("", "0", "root")
    assert "/keys" in steps["VOLUME"]
    env = steps["ENV"].split()
    assert "SMS_OUTBOX_SECURITY__KEYS_DIR=/keys" in env
    assert "sms-outbox" in steps["HEALTHCHECK"] and '"check"' in steps["HEALTHCHECK"]
    assert "chown 10001:10001 /keys" in steps["RUN"]


@pytest.mark.slow
def test_the_wheel_from_the_dockerfile_files_installs_and_runs_without_a_tests_package(
    tmp_path: Path,
) -> None:
    source = tmp_path / "app"
    source.mkdir()
    for name, target in _copied():
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / target)
    assert not (source / "tests").exists()

    # The fresh virtualenv must import its own copy, whatever this run's PYTHONPATH says.
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment["PIP_NO_INDEX"] = "1"

    def run(*args: str | Path, cwd: Path = tmp_path) -> str:
        result = subprocess.run(
            [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600,
            env=environment,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    # Offline: no package index, and the build backend this environment already has.
    offline = ("--no-index", "--no-deps")
    wheel_args = ("-q", *offline, "--no-build-isolation", "-w", tmp_path / "dist", source)
    run(sys.executable, "-m", "pip", "wheel", *wheel_args)
    [wheel] = (tmp_path / "dist").glob("sms_outbox-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"jobs", "scheduler"} <= tops
    assert "tests" not in tops

    fresh = tmp_path / "venv"
    run(sys.executable, "-m", "venv", fresh)
    bin_dir = fresh / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "-q", *offline, wheel)
    site = Path(
        run(
            bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
        ).strip()
    )
    # The dependencies come from this environment's site-packages, after the wheel's own.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    shown = run(bin_dir / "sms-outbox", "--help")
    where = run(bin_dir / "python", "-c", "import jobs, scheduler; print(jobs.__file__)")

    assert "check" in shown and "cancel" in shown and "retry" in shown
    assert Path(where.strip()).is_relative_to(site)
    assert not (site / "tests").exists()
