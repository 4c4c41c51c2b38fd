"""Commands that report: `status` (a message, a campaign, the account), `campaigns` and the
`dashboard`. They read and never write."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from jobs.clock import SystemClock
from jobs.dispatch import optouts
from jobs.errors import InputError
from jobs.mongo import reports, status
from jobs.mongo.connection import Db, connect
from jobs.mongo.inbound import InboundLog
from jobs.mongo.inbox import Inbox
from jobs.rules import interventions
from scheduler.commands import unconfirmed
from scheduler.commands.output import (
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    Subparsers,
    command,
    emit,
    json_value,
)
from scheduler.commands.texts import (
    account_text,
    campaign_text,
    optout_text,
    progress_line,
    status_text,
)
from scheduler.settings import Settings
from scheduler.surfaces import watch


def register(sub: Subparsers) -> None:
    """`status`, `campaigns` and `dashboard`."""
    stat = command(
        sub, "status", "a message's status, a campaign's counts, or the account and opt-out rates",
        "With MESSAGE_ID: the message's state, reason and why it waits. With --campaign: counts"
        " by state and reason, receipts and the ETA (--watch follows it live, --csv lists every"
        " recipient). Alone: whether the Flowroute account is held, and today's opt-out rates.",
    )  # fmt: skip
    stat.add_argument("id", nargs="?", metavar="MESSAGE_ID")
    stat.add_argument("--campaign", metavar="CAMPAIGN_ID")
    output = stat.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true", help="one row per recipient (--campaign)")
    stat.add_argument("--watch", action="store_true", help="follow the campaign live until it ends")
    stat.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (--watch)"
    )
    stat.set_defaults(handler=_status)
    camps = command(
        sub, "campaigns", "recent campaigns with their progress",
        "The newest broadcasts, cancelled ones included, with their progress by bucket.",
    )  # fmt: skip
    camps.add_argument("--limit", type=int, default=20)
    camps.add_argument("--json", action="store_true")
    camps.set_defaults(handler=_campaigns)
    dash = command(
        sub, "dashboard", "serve the read-only web dashboard",
        "Serve a read-only page of campaigns, failures, opt-out rates and the account's state"
        " on dashboard.listen; every request needs dashboard.token.",
    )  # fmt: skip
    dash.add_argument("--listen", help="HOST:PORT (default: dashboard.listen)")
    dash.set_defaults(handler=_dashboard, daemon=True)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    db = connect(settings.mongodb)
    if args.campaign:
        return _campaign_status(args, settings, db)
    if args.watch or args.csv:
        raise InputError("--watch and --csv need --campaign ID")
    if not args.id:
        return _account_status(args, settings, db)
    doc = status.get(db, args.id)
    if doc is None:
        print(f"no message {args.id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    lease = status.lease_until(db, args.id) if doc.get("state") == "sending" else None
    waiting = interventions.why_waiting(doc, datetime.now(UTC), lease)
    if waiting is not None:
        doc["waiting"] = waiting
    emit(doc, True) if args.json else print(status_text(doc))
    return EXIT_OK


def _account_status(args: argparse.Namespace, settings: Settings, db: Db) -> int:
    held = status.account(db)
    rates = optouts.today(InboundLog(db), SystemClock())
    threshold = settings.replies.optout_warn_rate
    unverified = unconfirmed.read(Inbox(db))
    if args.json:
        listed = [{**vars(r), "rate": r.rate, "over": r.over(threshold)} for r in rates]
        emit({"account": held, "opt_outs": listed, "unverified": unverified}, True)
    else:
        print(account_text(held))
        if any(r.opt_outs for r in rates):  # quiet until someone has opted out today
            print(optout_text(rates, threshold))
        if unverified["count"]:
            print(unconfirmed.text(unverified))
    return EXIT_OK


def _campaign_status(args: argparse.Namespace, settings: Settings, db: Db) -> int:
    def read() -> dict[str, Any]:
        now = datetime.now(UTC)
        lease = timedelta(seconds=settings.dispatch.lease_seconds)
        counts = reports.campaign(db, args.campaign, now, lease)
        rate = settings.flowroute.rate_per_second or None
        view = watch.summary(counts, now, rate, settings.quiet_hours.window())
        return {**view, "delivery": status.delivery(counts.states), "account": status.account(db)}

    view = read()
    if view["total"] == 0 and view["request"] is None:
        print(f"no campaign {args.campaign}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.csv:
        watch.write_csv(reports.recipients(db, args.campaign), sys.stdout)
    elif args.watch:
        return _watch(args, read)
    elif args.json:
        emit(view, True)
    else:
        print(campaign_text(view))
    return EXIT_OK


def _watch(args: argparse.Namespace, read: Any) -> int:
    """Redraw on a terminal; elsewhere (a pipe, a log) one line, or one JSON object, a refresh."""
    console = Console(highlight=False)
    if args.json:
        on_view: Any = lambda v: print(json.dumps(v, default=json_value), flush=True)  # noqa: E731
    elif not console.is_terminal:
        on_view = lambda v: print(progress_line(v), flush=True)  # noqa: E731
    else:
        on_view = None
    try:
        final = watch.watch(read, console, max(args.interval, 0.2), on_view)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # the campaign goes on; only the watching stopped
    ended = final["progress"]["ended"] or "done"
    if on_view is None or not args.json:
        print(f"campaign {args.campaign} is {ended}: {final['total']} messages", flush=True)
    return EXIT_OK


def _campaigns(args: argparse.Namespace, settings: Settings) -> int:
    rows = watch.campaign_rows(reports.recent_campaigns(connect(settings.mongodb), args.limit))
    if args.json:
        emit(rows, True)
    elif not rows:
        print("no campaigns yet")
    else:
        Console(highlight=False, width=max(Console().width, 132)).print(watch.campaign_table(rows))
    return EXIT_OK


def _dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.surfaces.dashboard import serve_dashboard

    return serve_dashboard(settings, connect(settings.mongodb), args.listen)
