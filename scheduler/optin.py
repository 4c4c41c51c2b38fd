"""Wiring of opt-in: the `[optin]` settings as the sign-up service's config, and the small app
that `sms-outbox web` serves with the /join blueprint (a fuller web app registers the same
blueprint: `jobs.optin.pages.blueprint`)."""

from __future__ import annotations

import hashlib
import hmac
import signal
import threading
from types import FrameType

import structlog
from flask import Flask
from flask_wtf import CSRFProtect

from jobs.clock import Clock, SystemClock
from jobs.mongo.connection import Db
from jobs.mongo.directory import Directory
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import OutboxStore
from jobs.optin.pages import blueprint
from jobs.optin.service import OptInConfig, SignUp
from jobs.rules.optin import Limits, Program
from scheduler.settings import Settings, keyring
from scheduler.web import Served, WsgiApp

log = structlog.get_logger("sms_outbox.web")
MAX_FORM_BYTES = 16 * 1024
THREADS = 4


def optin_config(settings: Settings) -> OptInConfig:
    """The sign-up paths' view of `[optin]` (the program's name defaults to `replies.program`)."""
    o = settings.optin
    program = Program(
        name=o.program or settings.replies.program, description=o.description,
        frequency=o.frequency, rates=o.rates, help_stop=o.help_stop, terms_url=o.terms_url,
        privacy_url=o.privacy_url, terms_version=o.terms_version,
    )  # fmt: skip
    limits = Limits(
        number_per_hour=o.number_per_hour, number_per_day=o.number_per_day,
        client_per_hour=o.client_per_hour, codes_per_hour=o.codes_per_hour,
        regions=tuple(o.regions),
    )  # fmt: skip
    return OptInConfig(
        program=program, limits=limits, number=o.number, keywords=tuple(o.keywords),
        confirm_words=tuple(o.confirm_words), price_per_segment=o.price_per_segment,
    )  # fmt: skip


def build_signup(settings: Settings, db: Db, clock: Clock | None = None) -> SignUp:
    """The sign-up service on `db`; its texts are signed with the daemon's key."""
    clock = clock or SystemClock()
    store = OptInStore(db)
    return SignUp(
        store, OutboxStore(db, clock, settings.mongodb.send_guard), Directory(db),
        keyring(settings), clock, optin_config(settings),
        sign=settings.security.require_signatures,
    )  # fmt: skip


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


def session_key(daemon_key: str) -> bytes:
    """The app's cookie-signing key, derived from the daemon's key (no setting of its own)."""
    return hmac.new(daemon_key.encode(), b"sms-outbox optin web session", hashlib.sha256).digest()


def serve_web(settings: Settings, db: Db, listen: str | None) -> int:
    """Serve /join on waitress until SIGTERM or SIGINT."""
    signup = build_signup(settings, db)
    signup.store.ensure_indexes()
    app = create_app(signup, signup.config.program, session_key(signup.keys.daemon_key()))
    wsgi: WsgiApp = app.wsgi_app
    served = Served(wsgi, listen or settings.optin.listen, threads=THREADS)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    served.start("web")
    log.info("web.listening", url=served.url)
    while not stop.wait(0.5):
        pass
    served.close()
    log.info("web.stopped")
    return 0
