"""The Flask app factory: sessions, CSRF, security headers, the OpenID client and the pages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from jobs.clock import Clock, SystemClock
from jobs.errors import StoreError
from jobs.mongo.connection import Db
from jobs.mongo.store import OutboxStore
from jobs.webapp.config import SESSION_HOURS, WebConfig
from jobs.webapp.context import EXTENSION, Web, current_person
from jobs.webapp.tokens import Issuer

log = structlog.get_logger("sms_outbox.web")
MAX_BODY_BYTES = 64 * 1024


def _csp(issuer: str) -> str:
    """No inline script anywhere; forms may post here, and logout is redirected to the issuer."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        f" connect-src 'self'; form-action 'self' {origin}; frame-ancestors 'none';"
        " base-uri 'none'"
    )


def create_app(
    config: WebConfig,
    db: Db,
    clock: Clock | None = None,
    issuer: Issuer | None = None,
    send_guard: Literal["auto", "tickets", "none"] = "auto",
    public: Iterable[Blueprint] = (),
) -> Flask:
    """The whole web app over database `db`; `issuer` may be given to share its cached keys.
    `public` pages (the sign-up page /join) are served beside the staff's, with no sign-in."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.session_secret,
        SESSION_COOKIE_NAME="sms_outbox_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    the_clock = clock or SystemClock()
    oauth = OAuth(app)
    client = oauth.register(
        "idp",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=config.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
    )
    app.extensions[EXTENSION] = Web(
        config, db, the_clock, issuer or Issuer(config.issuer),
        OutboxStore(db, the_clock, send_guard), client,
    )  # fmt: skip
    csrf = CSRFProtect(app)
    app.jinja_env.globals["current_person"] = current_person
    _register_pages(app, csrf, public)
    _answer_safely(app, _csp(config.issuer))
    return app


def _register_pages(app: Flask, csrf: CSRFProtect, public: Iterable[Blueprint]) -> None:
    """The staff's pages and JSON API, then the public ones."""
    from jobs.webapp import api, auth, compose, pages

    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(compose.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # bearer tokens, never cookies: nothing a browser sends by itself
    for page in public:
        app.register_blueprint(page)


def _answer_safely(app: Flask, policy: str) -> None:
    """The security headers on every answer, and pages (or API problems) for refused forms,
    an unreachable database and 401/403/404."""
    from jobs.webapp import api

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def csrf_refused(exc: CSRFError) -> tuple[str, int]:
        log.info("web.csrf_refused", path=request.path, reason=exc.description)
        text = "This form was not sent by this app's page (or it expired). Reload and try again."
        return render_template("message.html", title="Refused", text=text), 400

    @app.errorhandler(StoreError)
    def store_failed(exc: StoreError) -> Any:
        log.warning("web.store_failed", error=type(exc).__name__, path=request.path)
        if request.path.startswith("/api/"):
            return api.problem(503, "unavailable", "the database is unreachable")
        text = "The database is unreachable; try again shortly."
        return render_template("message.html", title="Unavailable", text=text), 503

    for code, title in ((401, "Sign-in needed"), (403, "Not allowed"), (404, "Not found")):
        app.register_error_handler(code, _page_error(code, title))


def _page_error(code: int, title: str) -> Any:
    texts = {
        401: "Sign in first.",
        403: "Your account may not do this. Senders need a grant; ask an administrator.",
        404: "There is nothing here.",
    }

    def handler(exc: Exception) -> Any:
        if request.path.startswith("/api/"):
            from jobs.webapp import api

            return api.problem(code, title.lower().replace(" ", "_"), texts[code])
        return render_template("message.html", title=title, text=texts[code]), code

    return handler
