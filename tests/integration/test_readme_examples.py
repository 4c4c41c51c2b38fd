"""The database examples of the README and docs/ run as written against the test server: the
pymongo producer example, the Node example and the mongosh examples. Only the server's
address, the database name and the placeholders a reader must fill in (`<alice's key>`,
`<campaign id>`) are replaced; the daemon then checks and sends what they inserted."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.keys import KeyRing, Signatures
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from jobs.pacing import SlidingWindowPacer
from tests.servers.mongo_server import MongoServer
from tests.unit.fakes import FakeProvider

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
NODE_MODULES = ROOT / ".cache" / "mongosh" / "node_modules"  # mongosh's driver, from npm
README_URI, README_DATABASE = "mongodb://localhost:27017", "sms_outbox"
Db = Database[dict[str, Any]]


def _blocks(language: str, marker: str) -> list[str]:
    """The code blocks in `language` holding `marker`, in the README and every page of docs/."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOCUMENTS)
    found = re.findall(rf"```{language}\n(.*?)```", text, re.S)
    return [block for block in found if marker in block]


def _as_written(code: str, uri: str, database: str) -> str:
    assert README_URI in code or "db." in code
    code = code.replace(f'"{README_URI}"', f'"{uri}"')
    code = code.replace(f'["{README_DATABASE}"]', f'["{database}"]')
    return code.replace(f'.db("{README_DATABASE}")', f'.db("{database}")')


@pytest.fixture
def alice(db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """alice may send from 12065550100 to a verified 12065550101; her key is in ./alice.key."""
    directory = Directory(db)
    directory.grant("alice", "12065550100")
    directory.add("12065550101", verified=True, now=ManualClock().now())
    keys = KeyRing(tmp_path / "keys")
    shutil.copy(keys.create_user_key("alice"), tmp_path / "alice.key")
    monkeypatch.chdir(tmp_path)
    return keys.user_key("alice") or ""


def _daemon(db: Db, tmp_path: Path, provider: FakeProvider) -> Dispatcher:
    clock = ManualClock()
    return Dispatcher(
        OutboxStore(db, clock), Directory(db), provider, SlidingWindowPacer(None, clock), clock,
        DispatchConfig(), Signatures(KeyRing(tmp_path / "keys")),
    )  # fmt: skip


def test_the_pymongo_producer_example_runs_and_its_message_is_sent(
    db: Db,
    mongo_server: MongoServer,
    alice: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    [example] = _blocks("python", "broadcast = {")
    namespace: dict[str, Any] = {}

    exec(_as_written(example, mongo_server.uri, db.name), namespace)

    # No daemon has admitted it yet: the example says so rather than printing None.
    assert capsys.readouterr().out == f"{namespace['message_id']} waiting for the daemon\n"
    provider = FakeProvider()
    daemon = _daemon(db, tmp_path, provider)
    daemon.run_once()
    daemon.run_once()
    assert provider.recipients() == ["12065550101"]  # its "+1 (206) 555-0101", as signed
    sent = db["message_status"].find_one({"_id": namespace["message_id"]})
    assert sent is not None and sent["state"] == "sent"
    campaign = db["message_status"].find_one({"_id": namespace["campaign_id"]})
    assert campaign is not None and campaign["state"] == "queued"  # its send_at is an hour away


def _node_driver() -> Path | None:
    if (NODE_MODULES / "mongodb").is_dir():
        return NODE_MODULES
    if os.environ.get("CI"):
        pytest.fail("the mongodb driver is missing: tests/servers/install-mongosh.sh installs it")
    return None


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_the_node_example_runs_in_node_and_its_message_is_sent(
    db: Db, mongo_server: MongoServer, alice: str, tmp_path: Path
) -> None:
    modules = _node_driver()
    if modules is None:
        pytest.skip("needs the mongodb driver: run tests/servers/install-mongosh.sh")
    [signing] = _blocks("js", "function sign(")
    [example] = _blocks("js", 'require("mongodb")')
    script = tmp_path / "producer.js"
    script.write_text(signing + _as_written(example, mongo_server.uri, db.name), encoding="utf-8")
    result = subprocess.run(
        ["node", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NODE_PATH": str(modules)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("queued ")

    provider = FakeProvider()
    _daemon(db, tmp_path, provider).run_once()
    assert provider.recipients() == ["12065550101"]  # its "206-555-0101", as signed


def _mongosh() -> str | None:
    local = ROOT / ".cache" / "mongosh" / "node_modules" / ".bin" / "mongosh"
    return shutil.which("mongosh") or (str(local) if local.exists() else None)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_the_mongosh_examples_run_and_their_messages_are_sent(
    db: Db, mongo_server: MongoServer, alice: str, tmp_path: Path
) -> None:
    mongosh = _mongosh()
    if mongosh is None:
        if os.environ.get("CI"):
            pytest.fail("mongosh is missing: tests/servers/install-mongosh.sh installs it")
        pytest.skip("needs mongosh: run tests/servers/install-mongosh.sh")
    [signing] = _blocks("js", "function sign(")
    [example] = _blocks("js", "db.message_status.findOne")
    campaign = "6650f0c2a1b2c3d4e5f60718"
    scripts = [signing + "\n" + example]
    for number, script in enumerate(scripts):
        path = tmp_path / f"example{number}.js"
        filled = script.replace("<alice's key>", alice).replace("<campaign id>", campaign)
        # As after `use <database>` in an interactive shell.
        prelude = f"db = db.getSiblingDB({db.name!r});\n"
        path.write_text(prelude + filled + "\nprint('done');\n", encoding="utf-8")
        result = subprocess.run(
            [mongosh, "--quiet", mongo_server.uri, "--file", str(path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "done" in result.stdout

    provider = FakeProvider()
    _daemon(db, tmp_path, provider).run_once()
    assert provider.recipients() == ["12065550101"]
    assert {d["state"] for d in db["message_status"].find()} == {"sent"}
