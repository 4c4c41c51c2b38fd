"""`sms-outbox recipients`: who may be texted, their consent and opt-outs, and what they got."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.mongo import reports
from jobs.mongo.connection import connect
from jobs.mongo.directory import Directory
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import Doc
from jobs.optin import history
from jobs.rules import phone
from scheduler.commands import recipients_import
from scheduler.commands.audit import check_recipients
from scheduler.commands.output import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    Subparsers,
    command,
    emit,
)
from scheduler.settings import Settings
from scheduler.surfaces import watch


def register(sub: Subparsers) -> None:
    """`recipients add|verify|opt-out|import|list|show|export|check`."""
    recipients = command(
        sub, "recipients", "who may be texted",
        "Add recipients, record their consent or opt-out, list them, show one number's"
        " history, and check the records for duplicates and conflicts.",
    )  # fmt: skip
    actions = recipients.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = command(actions, "add", "add recipients (not texted until verified)")
    add.add_argument("numbers", nargs="+", metavar="NUMBER")
    add.add_argument("--verified", action="store_true", help="they have opted in")
    verify = command(
        actions, "verify", "record that NUMBER opted in",
        "Record that NUMBER gave consent, when and how (--source); ends an earlier opt-out.",
    )  # fmt: skip
    verify.add_argument("number", metavar="NUMBER")
    verify.add_argument("--source", default="cli", help="how consent was given")
    opt_out = command(actions, "opt-out", "never text NUMBER again, from any sender")
    opt_out.add_argument("number", metavar="NUMBER")
    opt_out.add_argument("--reason", default="requested", help="why, for the record")
    imp = command(
        actions, "import", "add the numbers in a CSV file's first column",
        "Add the numbers in a CSV file's first column; a second column of yes/true marks"
        " that number verified.",
    )  # fmt: skip
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--verified", action="store_true", help="every number has opted in")
    rlist = command(actions, "list", "list recipients, one line per number, with opt-outs")
    rlist.add_argument("--json", action="store_true")
    show = command(
        actions, "show", "one number's consent history and the messages sent to it",
        "Show NUMBER's state, its whole history oldest first (every consent and opt-out with"
        " its evidence, the sign-up steps, the texts it sent) and the newest messages sent to"
        " it (any spelling of the number).",
    )  # fmt: skip
    show.add_argument("number", metavar="NUMBER")
    show.add_argument("--limit", type=int, default=20, help="messages to show (default 20)")
    show.add_argument("--json", action="store_true")
    export = command(
        actions, "export", "write every number's consent history as CSV, for an audit",
        "Write one CSV row per consent, opt-out, sign-up step and text, for every number.",
    )  # fmt: skip
    export.add_argument("--evidence", action="store_true", required=True,
                        help="one row per consent, opt-out, sign-up step and text")  # fmt: skip
    export.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    check = command(
        actions, "check", "report numbers stored several ways, opt-out conflicts and bad phones"
    )
    check.add_argument(
        "--fix", action="store_true", help="merge each number's records into one, keeping evidence"
    )
    check.add_argument("--json", action="store_true")
    recipients.set_defaults(handler=_recipients)


def _recipients(args: argparse.Namespace, settings: Settings) -> int:
    directory = Directory(connect(settings.mongodb))
    if args.action in {"add", "verify", "opt-out"} or getattr(args, "fix", False):
        directory.ensure_indexes()  # `import` does so itself, before its first write
    now = datetime.now(UTC)
    if args.action == "add":
        numbers = [directory.add(n, verified=args.verified, now=now) for n in args.numbers]
        emit([_added_line(directory, n, args.verified) for n in numbers], False)
    elif args.action == "verify":
        print(f"{directory.verify(args.number, now=now, by=args.source)}\tverified")
    elif args.action == "opt-out":
        number = phone.normalize(args.number)
        directory.opt_out(number, now=now, reason=args.reason)
        print(f"{number}\topted out of every sender and number")
    elif args.action == "import":
        return recipients_import.run(directory, Path(args.file), verified=args.verified, now=now)
    elif args.action == "check":
        return check_recipients(directory, fix=args.fix, as_json=args.json)
    elif args.action == "show":
        return _show(directory, args, settings)
    elif args.action == "export":
        return _export(args, OptInStore(directory.users.database))
    else:
        rows = list(directory.recipients())
        emit(rows if args.json else [recipient_line(r) for r in rows], args.json)
    return EXIT_OK


def _added_line(directory: Directory, number: str, verified: bool) -> str:
    """What the number is now: an opt-out on record outlives a new `--verified`."""
    merged = directory.recipient(number) or {}
    if merged.get("opted_out"):
        return (
            f"{number}\topted out {_evidence(merged['opted_out'])}: not texted"
            " (recipients verify records new consent)"
        )
    return f"{number}\t{'verified' if merged.get('verified') else 'not verified'}"


def _evidence(opted_out: Any) -> str:
    """An opt-out's evidence in a few words: the text that did it, or the reason, and when."""
    if not isinstance(opted_out, dict):
        return ""
    why = f"texted {opted_out['text']!r}" if opted_out.get("text") else opted_out.get("reason")
    at = opted_out.get("at")
    when = f" at {watch.iso(at)}" if isinstance(at, datetime) else ""
    return f"({why}{when})"


def recipient_line(row: Doc) -> str:
    """One line of `recipients list`: the number, its state and an opt-out's evidence."""
    if row.get("invalid"):
        return f"-\tinvalid record {row.get('record')}: {row['invalid']}"
    if row.get("opted_out"):
        state = f"opted out {_evidence(row['opted_out'])}"
        if isinstance(row["opted_out"], dict) and row["opted_out"].get("confirmed") is False:
            state += " (STOP not confirmed by Flowroute)"
    else:
        state = "verified" if row.get("verified") else "-"
    if row.get("unmatched"):
        state += f"\t(also stored as {', '.join(row['unmatched'])}: run recipients check --fix)"
    return f"{row.get('phone')}\t{state}"


def _show(directory: Directory, args: argparse.Namespace, settings: Settings) -> int:
    number = phone.normalize(args.number)
    db = connect(settings.mongodb)
    events = history.history(OptInStore(db), number)
    messages = reports.messages_to(db, number, args.limit)
    if not directory.records(number) and not messages and not events:
        print(f"{number} is not a recipient and was never texted")
        return EXIT_NOT_FOUND
    merged = directory.recipient(number) or {"phone": number}
    if args.json:
        emit({"recipient": merged, "history": events, "messages": messages}, True)
        return EXIT_OK
    print(recipient_line(merged))
    for line in history.lines(events):
        print(line)
    print(f"messages to {number} ({len(messages)}, newest first):")
    for doc in messages:
        error = doc.get("error") or {}
        detail = doc.get("provider_id") or error.get("code") or ""
        when = doc.get("sent_at") or doc.get("created_at")
        stamp = watch.iso(when) if isinstance(when, datetime) else "-"
        print(f"  {stamp:<26}{doc.get('state')!s:<12}{doc.get('campaign') or doc['_id']}  {detail}")
    return EXIT_OK


def _export(args: argparse.Namespace, store: OptInStore) -> int:
    """`recipients export --evidence` (jobs/optin/history.py)."""
    if args.output is None:
        history.export(store, sys.stdout)
        return EXIT_OK
    with Path(args.output).open("w", newline="", encoding="utf-8") as out:
        rows = history.export(store, out)
    print(f"wrote {rows} rows to {args.output}", file=sys.stderr)
    return EXIT_OK
