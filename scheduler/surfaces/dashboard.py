"""The read-only dashboard: one server-rendered page of campaigns, failures and opt-out rates."""

from __future__ import annotations

import hashlib
import hmac
import signal
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from html import escape
from http.cookies import CookieError, SimpleCookie
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

import structlog
from pydantic import SecretStr

from jobs.dispatch import optouts
from jobs.errors import ConfigError
from jobs.health import AccountStatus
from jobs.mongo import reports
from jobs.mongo.connection import Db
from jobs.mongo.inbound import InboundLog
from jobs.rules.optout_rate import WARN_RATE
from scheduler.settings import Settings
from scheduler.surfaces import watch
from scheduler.surfaces.exporter import StoredAccount
from scheduler.surfaces.web import Served, StartResponse, WsgiApp, respond

log = structlog.get_logger("sms_outbox.dashboard")
HTML = "text/html; charset=utf-8"
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]
PAGE_CACHE_SECONDS = 5.0
OVER = ' class="over"'
FIELDS = ("sent", "delivered", "failed", "rejected", "waiting")
COOKIE = "sms_outbox_dashboard"
SIGN_IN = "/sign-in"
MAX_FORM_BYTES = 4096
TOKEN_FORM = (
    '<!doctype html><meta charset="utf-8"><title>sms-outbox</title>'
    '<form method="post" action="sign-in"><label>Dashboard token '
    '<input type="password" name="token" autocomplete="current-password" autofocus></label> '
    "<button>Open</button></form>\n"
)

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2733;background:#f6f8fa}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
.meta{color:#5b6775}.pill{padding:.1rem .5rem;border-radius:1rem;color:#fff}
.active{background:#2e7d32}.held{background:#c62828}.paused{background:#ef6c00}
.wide{overflow-x:auto}.grid{display:flex;gap:1.5rem;flex-wrap:wrap;align-items:flex-start}
.grid section{flex:1;min-width:18rem}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;width:100%;font-size:13px}
th,td{padding:.35rem .5rem;border-bottom:1px solid #e5e9ef;text-align:right;white-space:nowrap}
th{background:#eef2f6;font-weight:600;white-space:normal}td.l,th.l{text-align:left}
code{font-size:12px}td.id{white-space:normal;word-break:break-all;min-width:6rem;max-width:8rem}
tr.over td{color:#c62828;font-weight:600}
.bar{width:70px;height:.6rem;background:#e5e9ef;border-radius:.3rem;overflow:hidden;
display:inline-block;vertical-align:middle;margin-right:.4rem}
.bar span{display:block;height:100%;background:#1976d2}
.sent{color:#00838f}.delivered{color:#2e7d32}.failed{color:#c62828}.rejected{color:#8e24aa}
.waiting{color:#b26a00}.reasons{font-size:.9em;color:#5b6775;text-align:left;white-space:normal;min-width:9rem}
"""


def mask(number: Any) -> str:
    """A phone number with all but its last four digits hidden."""
    text = str(number or "")
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) <= 4:
        return "•" * len(digits) or "-"
    return "•" * (len(digits) - 4) + digits[-4:]


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


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _campaign_row(
    counts: reports.CampaignCounts, view: dict[str, Any], quote: Callable[[Any], str]
) -> str:
    request = counts.request or {}
    prog = view["progress"]
    cid = quote(counts.campaign)
    created = request.get("created_at")
    eta = view.get("eta")
    cells = [
        f'<td class="l id"><code>{cid}</code></td>',
        f'<td class="l">{quote(request.get("user") or "-")}</td>',
        f'<td class="l">{created:%m-%d %H:%M}</td>'
        if isinstance(created, datetime)
        else '<td class="l">-</td>',
        f'<td class="l"><span class="bar"><span style="width:{100 * prog["fraction"]:.1f}%">'
        f'</span></span><span data-field="progress">{100 * prog["fraction"]:.1f}%</span></td>',
        f'<td data-field="total">{view["total"]}</td>',
        *(f'<td class="{f}" data-field="{f}">{prog[f]}</td>' for f in FIELDS),
        f'<td data-field="delivery_rate">{_percent(view["delivery_rate"])}</td>',
        f'<td data-field="ended">{prog["ended"] or (f"{eta:%m-%d %H:%M}" if eta else "-")}</td>',
        '<td class="reasons">'
        + (", ".join(f"{quote(code)}&nbsp;{n}" for code, n in view["reasons"].items()) or "-")
        + "</td>",
    ]
    return f'<tr data-campaign="{cid}">{"".join(cells)}</tr>'


def render(
    db: Db,
    now: datetime,
    account: AccountStatus,
    refresh_seconds: int,
    rate_limit: float | None,
    optout_warn_rate: float = WARN_RATE,
) -> str:
    """The whole page; every value from the database is escaped. The opt-out rates are today's
    (UTC) STOPs against messages sent, counted as `sms-outbox status` and the daemon count them."""

    def quote(value: Any) -> str:
        return escape(str(value), quote=True)

    rows = []
    for counts in reports.recent_campaigns(db, 20):
        # The page's ETA is the waiting messages at the account's rate; `status --watch` also
        # lets each wait for its due time and quiet hours, which costs a read of every one.
        counts.waiting_due = [(now, "")] * sum(counts.states.get(s, 0) for s in reports.WAITING)
        rows.append(_campaign_row(counts, watch.summary(counts, now, rate_limit, None), quote))
    states: dict[str, int] = {}
    failures: dict[str, int] = {}
    for (state, reason), n in reports.states_and_reasons(db).items():
        states[state] = states.get(state, 0) + n
        if reason and state in ("failed", "rejected", "undelivered", "expired", "unknown"):
            failures[f"{state}: {reason}"] = failures.get(f"{state}: {reason}", 0) + n
    senders = optouts.on_day(InboundLog(db), now)
    state = account.state()
    head = "".join(
        f'<th class="{f}">{f}</th>' for f in FIELDS
    )  # the bucket names double as CSS classes
    campaign_table = (
        '<table id="campaigns"><tr><th class="l">campaign</th><th class="l">user</th>'
        '<th class="l">created (UTC)</th><th class="l">progress</th><th>total</th>'
        f"{head}<th>delivered %</th><th>ETA (UTC)</th><th class=\"l\">failures by reason</th>"
        "</tr>" + ("".join(rows) or '<tr><td class="l" colspan="13">no campaigns yet</td></tr>')
        + "</table>"
    )  # fmt: skip
    state_rows = "".join(
        f'<tr><td class="l">{quote(s)}</td><td data-state="{quote(s)}">{n}</td></tr>'
        for s, n in sorted(states.items())
    )
    failure_rows = "".join(
        f'<tr><td class="l">{quote(k)}</td><td>{n}</td></tr>'
        for k, n in sorted(failures.items(), key=lambda item: -item[1])
    )
    sender_rows = "".join(
        f'<tr data-sender="{quote(r.source)}"{OVER if r.over(optout_warn_rate) else ""}>'
        f'<td class="l">{quote(r.source)}</td><td data-field="sent">{r.sent}</td>'
        f'<td data-field="opt_outs">{r.opt_outs}</td>'
        f'<td data-field="rate">{_percent(r.rate)}</td></tr>'
        for r in senders
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_seconds}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sms-outbox</title><style>{STYLE}</style></head><body>
<h1>sms-outbox</h1>
<div class="meta">database <code>{quote(db.name)}</code> · as of {watch.iso(now)[:19]}Z ·
Flowroute account <span class="pill {quote(state)}" id="account">{quote(state)}</span> ·
refreshes every {refresh_seconds} s · read-only</div>
<h2>Campaigns</h2><div class="wide">{campaign_table}</div>
<div class="grid"><section><h2>Failures by reason</h2>
<table id="failures"><tr><th class="l">state: reason</th><th>messages</th></tr>
{failure_rows or '<tr><td class="l" colspan="2">none</td></tr>'}</table></section>
<section><h2>Opt-out rate per sender number today (UTC)</h2>
<table id="senders"><tr><th class="l">number</th><th>sent</th>
<th>STOP replies</th><th>rate</th></tr>
{sender_rows or '<tr><td class="l" colspan="4">nothing sent today</td></tr>'}</table>
<div class="meta">warned about over {_percent(optout_warn_rate)}</div></section>
<section><h2>All messages by state</h2>
<table id="states"><tr><th class="l">state</th><th>messages</th></tr>{state_rows}</table>
</section></div>
</body></html>
"""


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

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("dashboard.stopping", signal=signal.Signals(signum).name)
        raise SystemExit(0)  # ends waitress's loop in this, the serving, thread

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    log.info("dashboard.listening", url=served.url + "/")
    print(f"dashboard on {served.url}/ (read-only; requests need the dashboard token)", flush=True)
    served.run()
    log.info("dashboard.stopped")
    return 0
