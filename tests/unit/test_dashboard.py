"""The dashboard's page and its gate, called as a WSGI application."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from pymongo.database import Database

from jobs import health
from jobs.mongo.store import Doc
from scheduler.dashboard import dashboard_app, mask, render

TOKEN = "s3cret-token"
NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def _call(app: Any, method: str = "GET", path: str = "/", query: str = "", **headers: str) -> Any:
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(response_headers))

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, **headers}
    body: Iterable[bytes] = app(environ, start_response)
    return seen["status"], seen["headers"], b"".join(body).decode()


def _app(page: str = "<p>page</p>") -> Any:
    return dashboard_app(SecretStr(TOKEN), lambda: page)


def test_every_request_without_the_token_gets_401() -> None:
    assert _call(_app())[0].startswith("401")
    assert _call(_app(), HTTP_AUTHORIZATION="Bearer wrong")[0].startswith("401")
    assert _call(_app(), query="token=wrong")[0].startswith("401")
    assert _call(_app(), "POST")[0].startswith("401")


def test_the_token_opens_the_page_as_a_header_or_in_the_query() -> None:
    status, headers, body = _call(_app(), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert status == "200 OK" and body == "<p>page</p>"
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert _call(_app(), query=f"token={TOKEN}")[0] == "200 OK"
    assert _call(_app(), "HEAD", query=f"token={TOKEN}")[2] == ""


def test_nothing_but_get_and_head_is_allowed() -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = _call(_app(), method, query=f"token={TOKEN}")
        assert status.startswith("405") and headers["Allow"] == "GET, HEAD"
    assert _call(_app(), path="/admin", query=f"token={TOKEN}")[0].startswith("404")


def test_numbers_are_masked_but_for_the_last_four_digits() -> None:
    assert mask("12065550100") == "•••••••0100"
    assert mask("+1 206 555 0100") == "•••••••0100"
    assert mask(None) == "-"


def test_the_page_escapes_everything_from_the_database(db: Database[Doc]) -> None:
    hostile = '<script>alert("x")</script>'
    db["message_status"].insert_many(
        [
            {"_id": "c1", "kind": "broadcast", "state": "expanded", "user": hostile,
             "created_at": NOW},
            {"_id": "c1:12065550101", "kind": "message", "campaign": "c1", "state": "sent",
             "from": "12065550100", "to": "12065550101", "sent_at": NOW},
            {"_id": "c1:12065550102", "kind": "message", "campaign": "c1", "state": "failed",
             "from": "12065550100", "error": {"code": "opted_out", "detail": hostile}},
            {"_id": "m1", "kind": "message", "state": "rejected",
             "error": {"code": "<b>bold</b>", "detail": "x"}},
        ]
    )  # fmt: skip
    page = render(db, NOW, health.AlwaysActive(), 10, 5)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>" not in page
    assert "12065550100" not in page and "12065550101" not in page
    assert "•••••••0100" in page
    assert 'data-campaign="c1"' in page
    assert '<td class="sent" data-field="sent">1</td>' in page
    assert '<td class="failed" data-field="failed">1</td>' in page
    assert "50.0%" in page  # one opt-out among two messages from 0100
    assert 'http-equiv="refresh" content="10"' in page
