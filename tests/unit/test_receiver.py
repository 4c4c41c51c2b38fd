"""The webhook receiver validates and only inserts; every other path or body writes nothing."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog
from pymongo.database import Database

from jobs.doubles.clock import ManualClock
from jobs.errors import StoreUnavailable
from jobs.mongo.inbox import Inbox
from jobs.web.receiver import Receiver

BASE = "/hooks/0123456789abcdef0123"
ID = "mdr2-" + "cd" * 16
RECEIPT = {"data": {"id": ID, "type": "delivery_receipt", "attributes": {"status": "delivered"}}}
INBOUND_ATTRIBUTES = {"from": "13125550199", "to": "12065550100", "body": "STOP"}
INBOUND = {"data": {"id": ID, "type": "message", "attributes": INBOUND_ATTRIBUTES}}


def call(app: Receiver, path: str, body: Any = None, method: str = "POST") -> tuple[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
    }
    seen: list[str] = []
    chunks = app(environ, lambda status, headers: seen.append(status))
    return seen[0], json.loads(b"".join(chunks))


@pytest.fixture
def app(db: Database[dict[str, Any]]) -> Receiver:
    return Receiver(Inbox(db), BASE, ManualClock(), max_bytes=2048)


def test_a_receipt_is_stored_as_read_and_answered_200(
    app: Receiver, db: Database[dict[str, Any]]
) -> None:
    status, _ = call(app, BASE + "/dlr", RECEIPT)
    assert status.startswith("200")
    (entry,) = db["inbox"].find()
    assert entry["kind"] == "dlr"
    assert entry["fields"]["provider_id"] == ID
    assert "state" not in entry


def test_an_inbound_message_is_stored(app: Receiver, db: Database[dict[str, Any]]) -> None:
    assert call(app, BASE + "/inbound/", INBOUND)[0].startswith("200")
    (entry,) = db["inbox"].find()
    assert entry["fields"]["body"] == "STOP"


@pytest.mark.parametrize(
    "path", ["/dlr", BASE, BASE + "/other", BASE[:-1] + "/dlr", "/hooks/dlr", BASE + "/dlr/x"]
)
def test_any_other_path_is_404_and_writes_nothing(
    app: Receiver, db: Database[dict[str, Any]], path: str
) -> None:
    assert call(app, path, RECEIPT)[0].startswith("404")
    assert db["inbox"].count_documents({}) == 0


def test_malformed_bodies_are_400_logged_and_not_stored(
    app: Receiver, db: Database[dict[str, Any]]
) -> None:
    with structlog.testing.capture_logs() as logs:
        status, answer = call(app, BASE + "/dlr", b"{not json")
    assert status.startswith("400") and "JSON" in answer["error"]
    assert logs[0]["event"] == "webhook.malformed"
    assert BASE not in json.dumps(logs)
    assert call(app, BASE + "/inbound", RECEIPT)[0].startswith("400")
    assert db["inbox"].count_documents({}) == 0


def test_large_bodies_are_413_and_other_methods_405(app: Receiver) -> None:
    assert call(app, BASE + "/dlr", b" " * 4096)[0].startswith("413")
    assert call(app, BASE + "/dlr", b"", method="GET")[0].startswith("405")


def test_a_database_outage_is_503_so_flowroute_sends_again(db: Database[dict[str, Any]]) -> None:
    class Down:
        def add(self, kind: str, fields: dict[str, Any], now: Any) -> None:
            raise StoreUnavailable("down")

    app = Receiver(Down(), BASE, ManualClock(), max_bytes=2048)
    assert call(app, BASE + "/dlr", RECEIPT)[0].startswith("503")


def test_a_bug_is_a_503_not_a_crash(db: Database[dict[str, Any]]) -> None:
    class Broken:
        def add(self, kind: str, fields: dict[str, Any], now: Any) -> None:
            raise RuntimeError("bug")

    app = Receiver(Broken(), BASE, ManualClock(), max_bytes=2048)
    assert call(app, BASE + "/dlr", RECEIPT)[0].startswith("503")


@pytest.mark.parametrize("depth", [17, 90, 100_000])
def test_deeply_nested_bodies_are_400_not_503(
    app: Receiver, db: Database[dict[str, Any]], depth: int
) -> None:
    app.max_bytes = 10**6
    inner = json.dumps(INBOUND_ATTRIBUTES)[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"
    for path, kind in (("/inbound", "message"), ("/dlr", "delivery_receipt")):
        nested = f'{{"data": {{"id": "{ID}", "type": "{kind}", "attributes": {inner}}}}}'
        assert call(app, BASE + path, nested.encode())[0].startswith("400")
    assert db["inbox"].count_documents({}) == 0


def test_brackets_inside_strings_do_not_count_as_nesting(
    app: Receiver, db: Database[dict[str, Any]]
) -> None:
    attributes = {**INBOUND_ATTRIBUTES, "body": "[[[[{{{{" * 10 + '\\"[['}
    body = {"data": {"id": ID, "type": "message", "attributes": attributes}}
    assert call(app, BASE + "/inbound", body)[0].startswith("200")
    assert (db["inbox"].find_one() or {})["fields"]["body"] == attributes["body"]


@pytest.mark.parametrize("field", ["body", "from"])
def test_lone_surrogates_are_400_not_503(
    app: Receiver, db: Database[dict[str, Any]], field: str
) -> None:
    raw = json.dumps(INBOUND)
    if field == "body":
        raw = raw.replace('"STOP"', '"ST\\ud800OP"')
    else:
        raw = raw.replace("13125550199", "1312555019\\ud800")
    assert call(app, BASE + "/inbound", raw.encode())[0].startswith("400")
    receipt = json.dumps(RECEIPT).replace('"delivered"', '"deliv\\udfffered"')
    assert call(app, BASE + "/dlr", receipt.encode())[0].startswith("400")
    assert db["inbox"].count_documents({}) == 0
