"""The dashboard's page and its gate, called as a WSGI application."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr
from pymongo.database import Database

from jobs import health
from jobs.dispatch import optouts
from jobs.doubles.clock import ManualClock
from jobs.mongo.inbound import InboundLog
from jobs.mongo.store import Doc
from scheduler.surfaces.dashboard import dashboard_app
from scheduler.surfaces.dashboard_page import mask, render

TOKEN = "s3cret-token"
NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def _call(app: Any, method: str = "GET", path: str = "/", query: str = "", **headers: Any) -> Any:
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(response_headers))

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, **headers}
    body: Iterable[bytes] = app(environ, start_response)
    return seen["status"], seen["headers"], b"".join(body).decode()


def _app(page: str = "<p>page</p>") -> Any:
    return dashboard_app(SecretStr(TOKEN), lambda: page)


def test_every_request_without_the_token_gets_401_and_the_token_form() -> None:
    assert _call(_app())[0].startswith("401")
    assert _call(_app(), HTTP_AUTHORIZATION="Bearer wrong")[0].startswith("401")
    assert _call(_app(), "POST")[0].startswith("401")
    _, headers, body = _call(_app())
    assert '<form method="post" action="sign-in">' in body and 'name="token"' in body
    assert headers["Content-Type"].startswith("text/html")


def test_a_token_in_the_url_is_never_accepted() -> None:
    status, _, body = _call(_app(), query=f"token={TOKEN}")
    assert status.startswith("401") and "page" not in body


def test_the_token_opens_the_page_as_a_header() -> None:
    status, headers, body = _call(_app(), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert status == "200 OK" and body == "<p>page</p>"
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert _call(_app(), "HEAD", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")[2] == ""


def _sign_in(token: str) -> Any:
    form = f"token={token}".encode()
    body: dict[str, Any] = {"wsgi.input": io.BytesIO(form), "CONTENT_LENGTH": str(len(form))}
    return _call(_app(), "POST", "/sign-in", "", **body)


def test_the_token_form_sets_a_cookie_that_opens_the_page_and_is_not_the_token() -> None:
    status, headers, _ = _sign_in(TOKEN)

    assert status.startswith("303") and headers["Location"] == "./"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    pair = cookie.split(";")[0]
    assert _call(_app(), HTTP_COOKIE=pair)[0] == "200 OK"
    assert _call(_app(), HTTP_COOKIE=pair.split("=")[0] + "=forged")[0].startswith("401")


def test_a_wrong_token_in_the_form_sets_no_cookie() -> None:
    status, headers, _ = _sign_in("wrong")
    assert status.startswith("401") and "Set-Cookie" not in headers


def test_nothing_but_get_and_head_is_allowed() -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = _call(_app(), method, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert status.startswith("405") and headers["Allow"] == "GET, HEAD"
    assert _call(_app(), path="/admin", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")[0].startswith("404")


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
    db["outbox"].insert_one(
        {"_id": "c1:12065550101", "state": "sent", "from": "12065550100", "to": "12065550101",
         "campaign": "c1", "sent_at": NOW}
    )  # fmt: skip
    page = render(db, NOW, health.AlwaysActive(), 10, 5)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>" not in page
    assert "12065550101" not in page  # a recipient's number is never shown
    assert '<td class="l">12065550100</td>' in page  # the organisation's own number is
    assert 'data-campaign="c1"' in page
    assert '<td class="sent" data-field="sent">1</td>' in page
    assert '<td class="failed" data-field="failed">1</td>' in page
    assert 'http-equiv="refresh" content="10"' in page


def test_opt_out_rates_are_todays_stops_as_status_and_the_daemon_count_them(
    db: Database[Doc],
) -> None:
    yesterday = NOW - timedelta(days=1)
    sent = [
        {"_id": f"m{n}", "kind": "message", "state": state, "from": source, "to": f"1206555{n:04d}",
         "campaign": campaign, "sent_at": when}
        for n, (state, source, campaign, when) in enumerate([
            ("sent", "12065550100", "c1", NOW),
            ("delivered", "12065550100", "c1", NOW),
            ("undelivered", "12065550100", "c1", NOW),
            ("delivered", "12065550100", "reply:stop:x", NOW),  # replies are not counted
            ("sent", "12065550100", "c1", yesterday),  # nor yesterday's sends
            ("sent", "12065550199", "c2", NOW),
        ])
    ]  # fmt: skip
    db["outbox"].insert_many(sent)
    # A message refused with 1110 is not a STOP received today: only the STOP records count.
    db["message_status"].insert_one(
        {"_id": "r", "kind": "message", "state": "failed", "from": "12065550199",
         "error": {"code": "opted_out"}}
    )  # fmt: skip
    db["inbound"].insert_many(
        [
            {"_id": "i1", "keyword": "stop", "outcome": "opted_out", "to": "12065550100",
             "received_at": NOW},
            {"_id": "i2", "keyword": "stop", "outcome": "opted_out", "to": "12065550100",
             "received_at": yesterday},
            {"_id": "i3", "keyword": "help", "outcome": "replied", "to": "12065550199",
             "received_at": NOW},
        ]
    )  # fmt: skip
    expected = optouts.today(InboundLog(db), ManualClock(NOW))
    assert [(r.source, r.opt_outs, r.sent) for r in expected] == [
        ("12065550100", 1, 3), ("12065550199", 0, 1),
    ]  # fmt: skip
    page = render(db, NOW, health.AlwaysActive(), 10, 5, 0.05)
    rows = dict(re.findall(r'<tr data-sender="([^"]+)"[^>]*>(.*?)</tr>', page, re.S))
    cells = {k: dict(re.findall(r'data-field="(\w+)">([^<]*)<', v)) for k, v in rows.items()}
    assert cells == {
        "12065550100": {"sent": "3", "opt_outs": "1", "rate": "33.3%"},
        "12065550199": {"sent": "1", "opt_outs": "0", "rate": "0.0%"},
    }
    # The organisation's own sending numbers are not secrets: they are shown whole.
    assert '<tr data-sender="12065550100" class="over">' in page
    assert '<tr data-sender="12065550199">' in page
    calm = render(db, NOW, health.AlwaysActive(), 10, 5, 0.5)
    assert 'class="over"' not in calm
