"""`sms-outbox web`: builds the web app from the settings and serves it with waitress."""

from __future__ import annotations

import structlog

from jobs.clock import SystemClock
from jobs.errors import ConfigError
from jobs.mongo.audit import AuditLog
from jobs.mongo.connection import Db
from jobs.mongo.store import OutboxStore
from jobs.optin.pages import blueprint
from jobs.webapp import WebConfig, create_app
from scheduler.listeners import split_listen
from scheduler.optin import build_signup
from scheduler.settings import Settings, keyring
from scheduler.surfaces.optin_web import proxied, serve_join
from scheduler.surfaces.web import Served, exit_on_signals

log = structlog.get_logger("sms_outbox.web")


def web_config(settings: Settings, listen: str) -> WebConfig:
    """The `[web]` settings (and the few others the app reads), or a ConfigError naming what
    is missing."""
    web = settings.web
    for name in ("issuer", "client_id", "client_secret", "session_secret"):
        value = getattr(web, name)
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if not text:
            extra = f" (or web.{name}_file)" if name.endswith("secret") else ""
            raise ConfigError(f"setting web.{name} is missing{extra}")
    assert web.issuer and web.client_id and web.client_secret and web.session_secret
    if len(web.session_secret.get_secret_value()) < 32:
        raise ConfigError("setting web.session_secret must be at least 32 characters")
    return WebConfig(
        public_url=web.public_url,
        issuer=web.issuer,
        client_id=web.client_id,
        client_secret=web.client_secret.get_secret_value(),
        session_secret=web.session_secret.get_secret_value(),
        keyring=keyring(settings),
        user_claim=web.user_claim,
        viewers=frozenset(web.viewers),
        admins=frozenset(web.admins),
        api_audience=web.api_audience,
        read_token=web.read_token.get_secret_value() if web.read_token else None,
        broadcasts_per_hour=web.broadcasts_per_hour,
        price_per_segment=web.price_per_segment,
        currency=web.currency,
        rate_per_second=settings.flowroute.rate_per_second or None,
        quiet_hours=settings.quiet_hours.window(),
        max_segments=settings.dispatch.max_segments,
        require_signatures=settings.security.require_signatures,
        listen_host=split_listen(listen)[0],
    )


def serve_web(settings: Settings, db: Db, listen: str | None) -> int:
    """Serve the web app, with the public sign-up page /join, in the foreground until SIGINT or
    SIGTERM. Before `[web]` names an identity provider, /join is served alone."""
    if settings.web.issuer is None:
        print("web.issuer is not set: serving the sign-up page /join alone", flush=True)
        return serve_join(settings, db, listen or settings.web.listen)
    address = listen or settings.web.listen
    try:
        split_listen(address)
    except ValueError as exc:
        raise ConfigError(f"web listen address: {exc}") from None
    signup = build_signup(settings, db)
    signup.store.ensure_indexes()
    join = blueprint(lambda: signup, signup.config.program)
    app = create_app(
        web_config(settings, address), db, send_guard=settings.mongodb.send_guard, public=[join]
    )
    # As `enqueue` does: the unique key index must exist before the first keyed insert.
    OutboxStore(db, SystemClock(), settings.mongodb.send_guard).ensure_indexes()
    AuditLog(db).ensure_indexes()
    try:
        served = Served(app, address, threads=8, **proxied(settings))
    except OSError as exc:
        raise ConfigError(f"web cannot listen on {address}: {exc}") from None

    exit_on_signals("web")
    log.info("web.listening", url=served.url + "/", public_url=settings.web.public_url)
    print(f"web app on {served.url}/ (public URL {settings.web.public_url})", flush=True)
    served.run()
    log.info("web.stopped")
    return 0
