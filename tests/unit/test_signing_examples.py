"""The README's Python and JavaScript signing examples agree with the daemon, byte for byte."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from jobs.model import DEFAULT_MAX_SEGMENTS
from jobs.rules import intake, signing

README = Path(__file__).resolve().parents[2] / "README.md"
KEY = "9f" * 32
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DOCS: list[dict[str, Any]] = [
    {"_id": ObjectId("6650f1a2b3c4d5e6f7a8b9c0"), "user": "alice", "to": "12065550101",
     "body": "Your appointment is at 3pm"},
    {"_id": "order-17 \u00e9", "user": "alice", "to": "12065550101", "from": "12065550100",
     "body": "caf\u00e9 \U0001f600", "key": "k-1", "priority": 5},
    {"_id": ObjectId("0000000000000000000000ff"), "user": "b\u00f6b", "audience": "verified",
     "body": 'quote " backslash \\ tab\t line\n end',
     "send_at": datetime(2026, 5, 1, 14, 0, 0, 123456, tzinfo=UTC)},
    {"_id": "x", "user": "alice", "to": "12065550101",
     "body": "control \x01 and \u2028 separator"},
    # Any spelling the daemon accepts is signed in its 11-digit form.
    {"_id": "y", "user": "alice", "to": "+12065550102", "from": "+1 206 555 0100", "body": "a"},
    {"_id": "z", "user": "alice", "to": "(206) 555-0102", "from": "206.555.0100", "body": "b"},
    {"_id": "t", "user": "alice", "to": "tel:+1-206-555-0102", "from": "1-206-555-0100",
     "body": "c"},
]  # fmt: skip


def _block(language: str, marker: str) -> str:
    blocks: list[str] = re.findall(
        rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S
    )
    return next(block for block in blocks if marker in block)


def _as_json(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _python_sign() -> Callable[[str, dict[str, Any]], str]:
    source = _block("python", "def sign(")
    definition = source[: source.index("\nfrom datetime")]
    namespace: dict[str, Any] = {}
    exec(definition, namespace)
    sign: Callable[[str, dict[str, Any]], str] = namespace["sign"]
    return sign


def test_readme_python_example_signs_like_the_daemon() -> None:
    sign = _python_sign()
    for doc in DOCS:
        assert sign(KEY, doc) == signing.sign(KEY, doc)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_readme_javascript_example_signs_like_the_daemon() -> None:
    definition = _block("js", "function sign(")
    docs = [json.loads(json.dumps(doc, default=_as_json)) for doc in DOCS]
    # ObjectIds reach the script as {"$oid": hex} and become objects with toHexString(), as
    # the drivers' ObjectId has.
    script = definition + (
        "\nconst docs = JSON.parse(process.argv[1]);"
        "\nfor (const d of docs) { if (d.send_at) d.send_at = new Date(d.send_at);"
        " if (d._id.$oid) { const hex = d._id.$oid; d._id = { toHexString: () => hex }; } }"
        f"\nconsole.log(JSON.stringify(docs.map((d) => sign({json.dumps(KEY)}, d))));"
    )
    result = subprocess.run(
        ["node", "-e", script, json.dumps(docs)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [signing.sign(KEY, doc) for doc in DOCS]


def test_readme_body_limits_match_max_segments() -> None:
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `body`"))
    found = re.search(r"(\d+) plain ASCII characters or (\d+) when any other", row)
    assert found is not None, row
    ascii_limit, other_limit = int(found[1]), int(found[2])
    assert f"by default {DEFAULT_MAX_SEGMENTS}" in row

    def admitted(body: str) -> bool:
        return intake.admit({"user": "a", "to": "12065550101", "body": body}, NOW).problem is None

    assert admitted("x" * ascii_limit) and not admitted("x" * (ascii_limit + 1))
    assert admitted("\u00e9" * other_limit) and not admitted("\u00e9" * (other_limit + 1))
