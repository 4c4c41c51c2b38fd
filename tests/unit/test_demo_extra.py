"""`sms-outbox demo` on an installation without the demo extra (mongomock) says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# mongomock made unimportable, as on an installation without the extra.
WITHOUT_MONGOMOCK = (
    "import sys; sys.modules['mongomock'] = None; "
    "from scheduler.cli import main; sys.exit(main(['demo']))"
)


def test_the_demo_without_its_extra_names_the_extra_to_install() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_MONGOMOCK],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "sms-outbox demo needs the demo extra: python3 -m pip install '.[demo]'"
    )
    assert "Traceback" not in result.stderr
