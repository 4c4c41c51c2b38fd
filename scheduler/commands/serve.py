"""Commands that run the service: the daemon, the webhook receiver alone, the health check and
the one-time set-up of indexes and roles."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import structlog

from jobs.clock import SystemClock
from jobs.errors import ConfigError, StoreRefused
from jobs.mongo import roles
from jobs.mongo.connection import connect, ping
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.directory import Directory
from jobs.mongo.inbound import InboundLog
from jobs.mongo.inbox import Inbox
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import OutboxStore
from scheduler.commands.output import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    Subparsers,
    command,
    emit,
)
from scheduler.daemon import Daemon, run_daemon
from scheduler.followup import build_followup
from scheduler.settings import Settings
from scheduler.surfaces.exporter import health_check
from scheduler.surfaces.webhooks import WebhookServer, build_receiver
from scheduler.wiring import build_dispatcher, describe


def register(sub: Subparsers) -> None:
    """`run`, `webhooks`, `web`, `join`, `check` and `init`."""
    run = command(
        sub, "run", "run the daemon until SIGTERM/SIGINT",
        "Run the daemon: admit, fan out, claim and send due messages, apply receipts and"
        " replies, and (with webhooks.listen) serve the webhook receiver. SIGTERM or Ctrl-C"
        " stops it after the send in flight.",
    )  # fmt: skip
    run.add_argument("--until-idle", action="store_true", help="exit once nothing is due")
    run.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    run.set_defaults(handler=_run, daemon=True)
    hooks = command(
        sub, "webhooks", "serve the webhook receiver alone",
        "Serve Flowroute's callbacks (receipts and inbound texts) on webhooks.listen, storing"
        " them in `inbox` for the daemon; for a separate user holding only smsOutboxReceiver.",
    )  # fmt: skip
    hooks.set_defaults(handler=_webhooks, daemon=True)
    web = command(
        sub, "web", "serve the web app: sign-in, campaigns, compose, JSON API",
        "Serve the web app on web.listen: staff sign in with the organisation's OpenID"
        " provider, follow campaigns, look up recipients and compose signed broadcasts;"
        " programs use its JSON API with the provider's access tokens.",
    )  # fmt: skip
    web.add_argument("--listen", help="HOST:PORT (default: web.listen)")
    web.set_defaults(handler=_web, daemon=True)
    join = command(
        sub, "join", "serve the public sign-up page /join",
        "Serve the public opt-in page /join on optin.listen: a person reads the program's"
        " terms, ticks the consent box and enters the code texted to them. No sign-in; apart"
        " from the staff web app, so it can face the internet alone.",
    )  # fmt: skip
    join.add_argument("--listen", help="HOST:PORT (default: optin.listen)")
    join.set_defaults(handler=_join, daemon=True)
    health = command(
        sub, "check", "health check: exit 0 if healthy, 69 if not",
        "With metrics.listen set, ask the daemon's /healthz whether its send cycle is alive;"
        " otherwise ping the database. Exit 0 when healthy, 69 when not.",
    )  # fmt: skip
    health.set_defaults(handler=_check)
    init = command(
        sub, "init", "create the indexes (idempotent)",
        "Create every index the daemon and the CLI use (the daemon also does at start);"
        " with --roles, also the database roles for producers, operators, daemon and receiver.",
    )  # fmt: skip
    init.add_argument("--roles", action="store_true", help="also create the database roles")
    init.set_defaults(handler=_init)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    db = connect(settings.mongodb)
    dispatcher = build_dispatcher(settings, db)
    ping(db)  # wrong credentials stop start-up here; an unreachable server is waited for
    structlog.get_logger("sms_outbox").info("daemon.configured", **describe(settings))
    server = None
    if settings.webhooks.listen is not None:
        # Small installs: the receiver in the daemon's process, on its own threads.
        server = WebhookServer.configured(build_receiver(settings, db), settings).start()
    try:
        followup = build_followup(settings, dispatcher)
        gave_up = run_daemon(
            dispatcher, settings, until_idle=args.until_idle, followup=followup, db=db
        )
    finally:
        if server is not None:
            server.close()
    if gave_up is not None:
        print(
            f"sms-outbox: gave up after {Daemon.GIVE_UP_AFTER} failed cycles in a row: {gave_up}",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _check(args: argparse.Namespace, settings: Settings) -> int:
    """A cheap health check (the container's HEALTHCHECK): with `metrics.listen`, is the
    daemon's send cycle alive (/healthz)? Otherwise: does the database answer?"""
    if settings.metrics.listen:
        alive, detail = health_check(settings.metrics.listen)
        print(detail, file=sys.stdout if alive else sys.stderr)
        return EXIT_OK if alive else EXIT_UNAVAILABLE
    if not ping(connect(settings.mongodb)):
        print(
            "sms-outbox: database unavailable: no server at mongodb.uri answered within"
            " mongodb.timeout_seconds",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    print("database reachable")
    return EXIT_OK


def _webhooks(args: argparse.Namespace, settings: Settings) -> int:
    if settings.webhooks.listen is None:
        raise ConfigError("setting webhooks.listen is missing (HOST:PORT to serve on)")
    server = WebhookServer.configured(build_receiver(settings, connect(settings.mongodb)), settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    server.start()
    while not stop.wait(0.5):
        pass
    server.close()
    return EXIT_OK


def _web(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.surfaces.web_app import serve_web  # Flask and Authlib load only for this command

    return serve_web(settings, connect(settings.mongodb), args.listen)


def _join(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.surfaces.optin_web import serve_join  # Flask loads only for this command

    return serve_join(settings, connect(settings.mongodb), args.listen)


def _init(args: argparse.Namespace, settings: Settings) -> int:
    db = connect(settings.mongodb)
    store = OutboxStore(db, SystemClock(), settings.mongodb.send_guard)
    store.ensure_indexes()
    Directory(db).ensure_indexes()
    DeliveryStore(store).ensure_indexes()
    Inbox(db).ensure_indexes()
    InboundLog(db).ensure_indexes()
    OptInStore(db).ensure_indexes()
    print(f"indexes ready in database {settings.mongodb.database!r}")
    if args.roles:
        try:
            done = roles.apply(db)
        except StoreRefused as exc:
            print(f"sms-outbox: the server refused to create roles: {exc.details}", file=sys.stderr)
            return EXIT_UNAVAILABLE if exc.code in (59, 115, 238) else EXIT_FAILURE
        emit(done, False)
    return EXIT_OK
