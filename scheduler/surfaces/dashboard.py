"""The read-only dashboard: one server-rendered page of campaigns, failures and opt-out rates."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import structlog
from pydantic import SecretStr

from jobs.errors import ConfigError
from jobs.mongo.connection import Db
from scheduler.settings import Settings
from scheduler.surfaces.dashboard_page import render
from scheduler.surfaces.exporter import StoredAccount
from scheduler.surfaces.web import Served, StartResponse, WsgiApp, exit_on_signals, respond

log = structlog.get_logger("sms_outbox.dashboard")
HTML = "text/html; charset=utf-8"
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]
PAGE_CACHE_SECONDS = 5.0
COOKIE = "sms_outbox_dashboard"
SIGN_IN = "/sign-in"
MAX_FORM_BYTES = 4096
TOKEN_FORM = (
    '<!doctype html><meta charset="utf-8"><title>sms-outbox</title>'
    '<form method="post" action="sign-in"><label>Dashboard token '
    '<input type="password" name="token" autocomplete="current-password" autofocus></label> '
    "<button>Open</button></form>\n"
)


def session(token: str) -> str:
    """The cookie the token form sets: derived from the token, so the cookie is not the token."""
    return hmac.new(token.encode(), COOKIE.encode(), hashlib.sha256).hexdigest()


def authorized(environ: dict[str, Any], token: str) -> bool:
    """The request carries the token as a Bearer header, or the cookie the token form set. A
    token in the URL is never accepted: URLs end up in histories, logs and Referer headers."""
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and given:
        return hmac.compare_digest(given.strip().encode(), token.encode())
    cookies = SimpleCookie()
    try:
        cookies.load(str(environ.get("HTTP_COOKIE", "")))
    except CookieError:
        return False
    kept = cookies.get(COOKIE)
    return kept is not None and hmac.compare_digest(kept.value.encode(), session(token).encode())


def _form_token(environ: dict[str, Any]) -> str:
    """The token typed into the form (a small urlencoded POST body)."""
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BYTES)
    except ValueError:
        return ""
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    fields = parse_qs(bytes(body).decode("utf-8", errors="replace"))
    return str((fields.get("token") or [""])[-1]).strip()


def _sign_in(start_response: StartResponse, token: str, given: str) -> list[bytes]:
    """The token form's answer: a cookie and back to the page, or the form again."""
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _ask_for_token(start_response)
    cookie = f"{COOKIE}={session(token)}; Path=/; HttpOnly; SameSite=Strict"
    headers = [("Location", "./"), ("Set-Cookie", cookie), *SECURITY_HEADERS]
    return respond(start_response, "303 See Other", "signed in\n", headers=headers)


def _ask_for_token(start_response: StartResponse) -> list[bytes]:
    return respond(
        start_response, "401 Unauthorized", TOKEN_FORM, HTML,
        headers=[("WWW-Authenticate", 'Bearer realm="sms-outbox"'), *SECURITY_HEADERS],
    )  # fmt: skip


class PageCache:
    """One rendering serves every viewer for a few seconds: a page reads whole collections."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._page: tuple[float, str] | None = None

    def get(self, make: Callable[[], str]) -> str:
        with self._lock:
            now = time.monotonic()
            if self._page is None or now - self._page[0] >= self.seconds:
                self._page = (now, make())
            return self._page[1]


def dashboard_app(
    token: SecretStr, page: Callable[[], str], reachable: Callable[[], bool] | None = None
) -> WsgiApp:
    """Answer GET/HEAD / with the page for requests carrying the token (or the cookie the token
    form at POST /sign-in sets); nothing can be changed."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        secret = token.get_secret_value()
        if method == "POST" and environ.get("PATH_INFO") == SIGN_IN:
            return _sign_in(start_response, secret, _form_token(environ))
        if not authorized(environ, secret):
            return _ask_for_token(start_response)
        if method not in ("GET", "HEAD"):
            return respond(
                start_response, "405 Method Not Allowed", "the dashboard is read-only\n",
                headers=[("Allow", "GET, HEAD"), *SECURITY_HEADERS],
            )  # fmt: skip
        if environ.get("PATH_INFO", "/") != "/":
            return respond(start_response, "404 Not Found", "not found\n", headers=SECURITY_HEADERS)
        try:
            body = page()
        except Exception as exc:  # the database is away: say so rather than crash the server
            log.warning("dashboard.unavailable", error=type(exc).__name__)
            return respond(
                start_response, "503 Service Unavailable", "the database is unreachable\n",
                headers=SECURITY_HEADERS,
            )  # fmt: skip
        answer = respond(start_response, "200 OK", body, HTML, SECURITY_HEADERS)
        return [] if method == "HEAD" else answer

    return app


def serve_dashboard(settings: Settings, db: Db, listen: str | None) -> int:
    """Serve the dashboard in the foreground until SIGINT or SIGTERM."""
    conf = settings.dashboard
    if conf.token is None or not conf.token.get_secret_value():
        raise ConfigError("setting dashboard.token is missing (or dashboard.token_file)")
    account = StoredAccount(db)
    rate = settings.flowroute.rate_per_second or None

    cache = PageCache(min(conf.refresh_seconds, PAGE_CACHE_SECONDS))

    def page() -> str:
        return cache.get(
            lambda: render(
                db, datetime.now(UTC), account, conf.refresh_seconds, rate,
                settings.replies.optout_warn_rate,
            )
        )  # fmt: skip

    try:
        served = Served(dashboard_app(conf.token, page), listen or conf.listen, threads=4)
    except ValueError as exc:
        raise ConfigError(f"dashboard listen address: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"dashboard cannot listen on {listen or conf.listen}: {exc}") from None

    exit_on_signals("dashboard")
    log.info("dashboard.listening", url=served.url + "/")
    print(f"dashboard on {served.url}/ (read-only; requests need the dashboard token)", flush=True)
    served.run()
    log.info("dashboard.stopped")
    return 0
