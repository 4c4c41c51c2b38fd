"""The `sms-outbox` command: a thin layer over the functions producers and the daemon use."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from rich.console import Console

from jobs import producer
from jobs.clock import SystemClock
from jobs.dispatch import optouts
from jobs.errors import ConfigError, InputError, StoreError, StoreRefused
from jobs.model import BROADCAST_AUDIENCE
from jobs.mongo import failures, reports, roles, status
from jobs.mongo.connection import Db, connect, ping
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.directory import Directory
from jobs.mongo.inbound import InboundLog
from jobs.mongo.inbox import Inbox
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import Doc, OutboxStore
from jobs.optin import history
from jobs.rules import intake, interventions, phone, segments
from jobs.rules.optout_rate import Rate
from scheduler import logs, watch
from scheduler.daemon import Daemon, build_dispatcher, build_followup, describe, run_daemon
from scheduler.exporter import health_check
from scheduler.parser import Handler, build_parser
from scheduler.settings import Settings, keyring, load_settings
from scheduler.webhooks import WebhookServer, build_receiver

# sysexits.h codes, so scripts and supervisors can tell failures apart.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_NOT_FOUND = EXIT_FAILURE
EXIT_UNAVAILABLE, EXIT_CONFIG = 69, 78
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser(HANDLERS).parse_args(argv)
    if args.command == "demo":
        from scheduler.demo import run_demo

        return run_demo()
    if args.command == "simulator":
        from scheduler.simulate import run_simulator

        return run_simulator(args)
    secrets: list[str] = []
    try:
        settings = load_settings(args.config, dict(os.environ))
        secrets = settings.secrets()
        logs.configure(settings.logging.level, settings.logging.format, settings.secrets())
        handler: Handler = args.handler
        return handler(args, settings)
    except ConfigError as exc:
        print(f"sms-outbox: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as exc:
        print(f"sms-outbox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        failure = failures.explain(exc, secrets)
        assert failure is not None
        print(f"sms-outbox: {failure.line}", file=sys.stderr)
        return EXIT_CONFIG if failure.config else EXIT_UNAVAILABLE


def _json_value(value: Any) -> Any:
    """Dates as ISO-8601 UTC; ids and anything else as text."""
    return watch.iso(value) if isinstance(value, datetime) else str(value)


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(value, default=_json_value, indent=2, sort_keys=True, ensure_ascii=False))
    elif isinstance(value, list):
        for item in value:
            print(item)
    else:
        print(value)


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    db = connect(settings.mongodb)
    dispatcher = build_dispatcher(settings, db)
    ping(db)  # wrong credentials stop start-up here; an unreachable server is waited for
    structlog.get_logger("sms_outbox").info("daemon.configured", **describe(settings))
    server = None
    if settings.webhooks.listen is not None:
        # Small installs: the receiver in the daemon's process, on its own threads.
        server = WebhookServer(build_receiver(settings, db), settings.webhooks.listen).start()
    try:
        followup = build_followup(settings, dispatcher)
        finished = run_daemon(
            dispatcher, settings, until_idle=args.until_idle, followup=followup, db=db
        )
    finally:
        if server is not None:
            server.close()
    if not finished:
        print(
            "sms-outbox: database unavailable: gave up after"
            f" {Daemon.GIVE_UP_AFTER} cycles (mongodb.uri, mongodb.timeout_seconds)",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, settings: Settings) -> int:
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


def _cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    if settings.webhooks.listen is None:
        raise ConfigError("setting webhooks.listen is missing (HOST:PORT to serve on)")
    server = WebhookServer(
        build_receiver(settings, connect(settings.mongodb)), settings.webhooks.listen
    )
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


def _cmd_init(args: argparse.Namespace, settings: Settings) -> int:
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
        _print(done, False)
    return EXIT_OK


def _cmd_senders(args: argparse.Namespace, settings: Settings) -> int:
    directory = Directory(connect(settings.mongodb))
    if args.action == "grant":
        source = directory.grant(args.user, args.number)
        print(f"{args.user} may send from {source}")
        if settings.security.require_signatures:
            path = keyring(settings).create_user_key(args.user)
            print(f"{args.user}'s signing key is in {path}; producers sign with it")
        return EXIT_OK
    senders = directory.senders()
    if args.json:
        _print(senders, True)
    else:
        _print([f"{s.get('user')}\t{s.get('source')}" for s in senders], False)
    return EXIT_OK


def _cmd_recipients(args: argparse.Namespace, settings: Settings) -> int:
    directory = Directory(connect(settings.mongodb))
    now = datetime.now(UTC)
    if args.action == "add":
        numbers = [directory.add(n, verified=args.verified, now=now) for n in args.numbers]
        state = "verified" if args.verified else "not verified"
        _print([f"{n}\t{state}" for n in numbers], False)
    elif args.action == "verify":
        print(f"{directory.verify(args.number, now=now, by=args.source)}\tverified")
    elif args.action == "opt-out":
        number = phone.normalize(args.number)
        directory.opt_out(number, now=now, reason=args.reason)
        print(f"{number}\topted out of every sender and number")
    elif args.action == "import":
        report = directory.import_csv(Path(args.file), verified=args.verified, now=now)
        for line, why in report.refused:
            print(f"line {line}: {why}", file=sys.stderr)
        print(f"imported {report.added} recipients, refused {len(report.refused)}")
        return EXIT_USAGE if report.refused else EXIT_OK
    elif args.action == "check":
        return _check_recipients(directory, fix=args.fix, as_json=args.json)
    elif args.action in ("show", "export"):
        return _consent_history(args, OptInStore(directory.users.database))
    else:
        rows = list(directory.recipients())
        if args.json:
            _print(rows, True)
        else:
            _print([_recipient_line(r) for r in rows], False)
    return EXIT_OK


def _consent_history(args: argparse.Namespace, store: OptInStore) -> int:
    """`recipients show NUMBER` and `recipients export --evidence` (jobs/optin/history.py)."""
    if args.action == "show":
        shown = history.history(store, args.number)
        _print(shown, True) if args.json else print(history.text(shown))
        return EXIT_OK
    if args.output is None:
        history.export(store, sys.stdout)
        return EXIT_OK
    with Path(args.output).open("w", newline="", encoding="utf-8") as out:
        rows = history.export(store, out)
    print(f"wrote {rows} rows to {args.output}", file=sys.stderr)
    return EXIT_OK


def _recipient_line(row: Doc) -> str:
    if row.get("invalid"):
        return f"-\tinvalid record {row.get('record')}: {row['invalid']}"
    state = "opted out" if row.get("opted_out") else "verified" if row.get("verified") else "-"
    if row.get("unmatched"):
        state += f"\t(also stored as {', '.join(row['unmatched'])}: run recipients check --fix)"
    return f"{row.get('phone')}\t{state}"


def _check_recipients(directory: Directory, *, fix: bool, as_json: bool) -> int:
    """Exit 0 when `users` holds one well-formed record per number (after --fix, if given)."""
    found = directory.audit()
    report: dict[str, Any] = {
        "duplicates": found.duplicates(),
        "misspelled": found.misspelled(),
        "conflicts": found.conflicts(),
        "invalid": [{"record": str(i), "why": why} for i, why in found.invalid],
        "fixed": directory.fix(found) if fix else 0,
    }
    if as_json:
        _print(report, True)
    else:
        for number, stored in report["duplicates"].items():
            print(f"{number}\tstored {len(stored)} times: {', '.join(map(repr, stored))}")
        for number, stored in report["misspelled"].items():
            if number not in report["duplicates"]:
                print(f"{number}\tstored as {', '.join(map(repr, stored))}")
        for number in report["conflicts"]:
            print(f"{number}\topted out on one record, verified on another: the opt-out wins")
        for bad in report["invalid"]:
            print(f"-\trecord {bad['record']}: {bad['why']} (not a recipient; fix it by hand)")
        if fix:
            print(f"merged the records of {report['fixed']} numbers into one each")
        elif found.to_fix():
            print(f"{len(found.to_fix())} numbers to merge: run again with --fix")
        if found.clean:
            print("users holds one well-formed record per number")
    clean = not found.invalid and (fix or not found.to_fix())
    return EXIT_OK if clean else EXIT_FAILURE


def _send_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--send-at {text!r} is not an ISO-8601 date and time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    if args.dry_run:
        return _dry_run(args, settings)
    db = connect(settings.mongodb)
    store = OutboxStore(db, SystemClock(), settings.mongodb.send_guard)
    store.ensure_indexes()  # the unique key index must exist before the first keyed insert

    def sign_key() -> str:
        key = keyring(settings).user_key(args.user)
        if key is None:
            raise InputError(
                f"user {args.user!r} has no signing key in {settings.security.keys_dir};"
                " grant it first (sms-outbox senders grant)"
            )
        return key

    common: dict[str, Any] = dict(
        user=args.user, body=args.body, now=datetime.now(UTC), source=args.source, key=args.key,
        send_at=_send_at(args.send_at), priority=args.priority,
        sign_key=sign_key if settings.security.require_signatures else None,
        directory=Directory(db),
    )  # fmt: skip
    if args.command == "broadcast":
        result = producer.broadcast(store, **common)
    else:
        result = producer.enqueue(store, to=args.to, **common)
    if args.json:
        _print({"id": str(result.id), "created": result.created}, True)
    else:
        print(result.id)
        if not result.created:
            print(f"key {args.key!r} was already queued as {result.id}", file=sys.stderr)
    return EXIT_OK


def _dry_run(args: argparse.Namespace, settings: Settings) -> int:
    """What the daemon would make of the message, without a database."""
    doc = {"user": args.user, "body": args.body, "to": getattr(args, "to", None)}
    if args.command == "broadcast":
        doc.update(to=None, audience=BROADCAST_AUDIENCE)
    doc = {k: v for k, v in doc.items() if v is not None}
    admission = intake.admit(doc, datetime.now(UTC), settings.dispatch.max_segments)
    if admission.problem is not None:
        raise InputError(admission.problem.detail, admission.problem.code)
    text = segments.normalize_text(admission.fields["body"])
    report = {
        "to": admission.fields.get("to"),
        "segments": admission.fields["segments"],
        "encoding": admission.fields["encoding"],
        "characters": segments.measure(text).characters,
        "text": text,
    }
    if args.json:
        _print(report, True)
    else:
        print(
            f"{report['segments']} segment(s), {report['encoding']}, {report['characters']}"
            " characters; nothing was queued"
        )
        if text != args.body:
            print(f"sent as: {text}")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    db = connect(settings.mongodb)
    if args.campaign:
        return _campaign_status(args, settings, db)
    if args.watch or args.csv:
        raise InputError("--watch and --csv need --campaign ID")
    if not args.id:
        held = status.account(db)
        rates = optouts.today(InboundLog(db), SystemClock())
        threshold = settings.replies.optout_warn_rate
        if args.json:
            listed = [{**vars(r), "rate": r.rate, "over": r.over(threshold)} for r in rates]
            _print({"account": held, "opt_outs": listed}, True)
        else:
            print(_account_text(held))
            if any(r.opt_outs for r in rates):  # quiet until someone has opted out today
                print(_optout_text(rates, threshold))
        return EXIT_OK
    doc = status.get(db, args.id)
    if doc is None:
        print(f"no message {args.id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    waiting = interventions.why_waiting(doc, datetime.now(UTC))
    if waiting is not None:
        doc["waiting"] = waiting
    _print(doc, True) if args.json else print(_status_text(doc))
    return EXIT_OK


def _campaign_status(args: argparse.Namespace, settings: Settings, db: Db) -> int:
    def read() -> dict[str, Any]:
        now = datetime.now(UTC)
        counts = reports.campaign(db, args.campaign, now)
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
        emit = (
            (lambda v: print(json.dumps(v, default=_json_value), flush=True)) if args.json else None
        )
        console = Console(highlight=False)
        try:
            final = watch.watch(read, console, max(args.interval, 0.2), emit)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED  # the campaign goes on; only the watching stopped
        if emit is None:
            console.print(f"campaign {args.campaign} is done: {final['total']} messages")
    elif args.json:
        _print(view, True)
    else:
        print(_campaign_text(view))
    return EXIT_OK


def _json_line(view: dict[str, Any]) -> None:
    print(json.dumps(view, default=_json_value, sort_keys=True, ensure_ascii=False), flush=True)


def _cmd_campaigns(args: argparse.Namespace, settings: Settings) -> int:
    rows = watch.campaign_rows(reports.recent_campaigns(connect(settings.mongodb), args.limit))
    if args.json:
        _print(rows, True)
    elif not rows:
        print("no campaigns yet")
    else:
        Console(highlight=False, width=max(Console().width, 120)).print(watch.campaign_table(rows))
    return EXIT_OK


def _cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.dashboard import serve_dashboard

    return serve_dashboard(settings, connect(settings.mongodb), args.listen)


def _cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.optin_web import serve_web

    return serve_web(settings, connect(settings.mongodb), args.listen)


def _operator(given: str | None) -> str:
    if given:
        return intake.check_name(given, "--by")
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        return f"uid {os.getuid()}"


def _cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    store = OutboxStore(connect(settings.mongodb), SystemClock(), settings.mongodb.send_guard)
    doc = store.find(status.parse_id(args.id))
    if doc is None:
        print(f"no message or campaign {args.id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    by = _operator(args.by)
    done = store.cancel(doc, by)
    children = store.cancel_campaign(str(doc["_id"]), by) if "audience" in doc else 0
    result = {"id": args.id, "cancelled": done is not None, "messages_cancelled": children}
    if args.json:
        _print(result, True)
    elif done is None and not children:
        print(f"{args.id} is {doc.get('state')}: nothing left to cancel", file=sys.stderr)
    else:
        what = "campaign" if "audience" in doc else "message"
        print(
            f"cancelled {what} {args.id}" + (f" and {children} queued messages" if children else "")
        )
    return EXIT_OK if done is not None or children else EXIT_FAILURE


def _cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    if not (args.ids or args.campaign or args.reason):
        raise InputError("say which messages to retry: MESSAGE_ID..., --campaign or --reason")
    store = OutboxStore(connect(settings.mongodb), SystemClock(), settings.mongodb.send_guard)
    ids = [status.parse_id(i) for i in args.ids] or None
    retried = store.retry(_operator(args.by), ids, args.campaign, args.reason)
    if args.json:
        _print({"retried": [str(doc["_id"]) for doc in retried]}, True)
    else:
        _print([str(doc["_id"]) for doc in retried], False)
        print(f"queued {len(retried)} messages again", file=sys.stderr)
    return EXIT_OK if retried else EXIT_NOT_FOUND


def _status_text(doc: Doc) -> str:
    lines = [f"{key:<12}{doc[key]}" for key in ("_id", "state") if key in doc]
    for key in ("to", "from", "user", "campaign", "attempts", "provider_id", "recipients"):
        if doc.get(key) is not None:
            lines.append(f"{key:<12}{doc[key]}")
    if doc.get("error"):
        lines.append(f"{'reason':<12}{doc['error'].get('code')}: {doc['error'].get('detail')}")
    if doc.get("waiting"):
        lines.append(f"{'waiting':<12}{doc['waiting']}")
    if doc.get("cancelled"):
        lines.append(
            f"{'cancelled':<12}by {doc['cancelled'].get('by')} at {doc['cancelled'].get('at')}"
        )
    for earlier in doc.get("history") or []:
        code = (earlier.get("error") or {}).get("code")
        who = earlier.get("retried_by")
        lines.append(f"{'earlier':<12}{earlier.get('state')} ({code}), retried by {who}")
    receipts = doc.get("receipts")
    if isinstance(receipts, list) and receipts and isinstance(receipts[-1], dict):
        last = receipts[-1]
        lines.append(f"{'carrier':<12}{last.get('status')} ({last.get('status_code')})")
    for key in ("due_at", "created_at", "sent_at", "delivered_at", "final_at", "updated_at"):
        if doc.get(key) is not None:
            lines.append(f"{key:<12}{doc[key]}")
    return "\n".join(lines)


def _optout_text(rates: list[Rate], threshold: float) -> str:
    day = rates[0].day if rates else "today"
    lines = [f"opt-outs on {day} (UTC) by sending number; warning over {threshold:.0%}:"]
    for r in rates:
        rate = "-" if r.rate is None else f"{r.rate:.1%}"
        flag = "  OVER THRESHOLD" if r.over(threshold) else ""
        lines.append(f"  {r.source}  {r.opt_outs} opt-outs / {r.sent} sent  {rate}{flag}")
    if not rates:
        lines.append("  nothing sent and no opt-outs yet")
    return "\n".join(lines)


def _account_text(held: dict[str, Any]) -> str:
    if not held.get("held"):
        return "account     sending"
    return (
        f"account     held since {held['since']}: Flowroute answered {held['code']}"
        f" ({held['detail']}); next probe at {held['probe_at']}"
    )


def _campaign_text(summary: dict[str, Any]) -> str:
    lines = [f"campaign {summary['campaign']}: {summary['total']} messages"]
    if summary["account"].get("held"):
        lines.append(_account_text(summary["account"]))
    request = summary.get("request")
    if request:
        lines.append(f"  request     {request.get('state')}")
        if request.get("error"):
            lines.append(f"  reason      {request['error'].get('code')}")
    lines += [f"  {state:<12}{count}" for state, count in summary["states"].items()]
    receipts = summary["delivery"]
    rate = "-" if receipts["rate"] is None else f"{receipts['rate']:.1%}"
    lines.append(
        f"receipts: {receipts['delivered']} delivered, {receipts['undelivered']} undelivered,"
        f" {receipts['expired']} expired, {receipts['awaiting']} awaiting; delivery rate {rate}"
    )
    if summary.get("eta") is not None:
        lines.append(f"  {'eta':<12}{watch.iso(summary['eta'])}")
    if summary["reasons"]:
        lines.append("by reason:")
        lines += [f"  {code:<20}{count}" for code, count in summary["reasons"].items()]
    return "\n".join(lines)


HANDLERS: dict[str, Handler] = {
    "campaigns": _cmd_campaigns,
    "dashboard": _cmd_dashboard,
    "simulator": lambda args, settings: EXIT_USAGE,  # runs before settings are read
    "check": _cmd_check,
    "cancel": _cmd_cancel,
    "retry": _cmd_retry,
    "enqueue": _cmd_enqueue,
    "init": _cmd_init,
    "recipients": _cmd_recipients,
    "run": _cmd_run,
    "senders": _cmd_senders,
    "status": _cmd_status,
    "webhooks": _cmd_webhooks,
    "web": _cmd_web,
}


if __name__ == "__main__":
    sys.exit(main())
