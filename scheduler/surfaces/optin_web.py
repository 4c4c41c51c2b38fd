"""`sms-outbox join`: the public sign-up page /join alone, apart from the staff's web app (which
serves the same blueprint, `jobs.optin.pages.blueprint`, beside its own pages)."""

from __future__ import annotations

import hashlib
import hmac
import signal
import threading
from types import FrameType

import structlog
from flask import Flask
from flask_wtf import CSRFProtect

from jobs.mongo.connection import Db
from jobs.optin.pages import blueprint
from jobs.optin.service import SignUp
from jobs.rules.optin import Program
from scheduler.optin import build_signup
from scheduler.settings import Settings
from scheduler.surfaces.web import Served

log = structlog.get_logger("sms_outbox.web")
MAX_FORM_BYTES = 16 * 1024
THREADS = 4


def create_app(signup: SignUp, program: Program, secret_key: bytes) -> Flask:
    """A minimal app serving /join: sessions only carry the CSRF token."""
    app = Flask("sms_outbox_optin")
    app.config.update(
        SECRET_KEY=secret_key, MAX_CONTENT_LENGTH=MAX_FORM_BYTES, WTF_CSRF_TIME_LIMIT=3600,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
    )  # fmt: skip
    CSRFProtect(app)
    app.register_blueprint(blueprint(lambda: signup, program))
    return app


def proxied(settings: Settings) -> dict[str, object]:
    """Waitress's settings for the reverse proxy in front of /join, if one is named: the client
    address the sign-up limits count is then the one the proxy saw, not the proxy's own."""
    if not settings.optin.trusted_proxy:
        return {}
    return {"trusted_proxy": settings.optin.trusted_proxy, "trusted_proxy_count": 1,
            "trusted_proxy_headers": "x-forwarded-for"}  # fmt: skip


def session_key(daemon_key: str) -> bytes:
    """The app's cookie-signing key, derived from the daemon's key (no setting of its own)."""
    return hmac.new(daemon_key.encode(), b"sms-outbox optin web session", hashlib.sha256).digest()


def serve_join(settings: Settings, db: Db, listen: str | None) -> int:
    """Serve /join on waitress until SIGTERM or SIGINT."""
    signup = build_signup(settings, db)
    signup.store.ensure_indexes()
    app = create_app(signup, signup.config.program, session_key(signup.keys.daemon_key()))
    served = Served(app, listen or settings.optin.listen, threads=THREADS, **proxied(settings))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    served.start("join")
    log.info("join.listening", url=served.url)
    while not stop.wait(0.5):
        pass
    served.close()
    log.info("join.stopped")
    return 0
