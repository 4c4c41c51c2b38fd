"""Commands that queue or change messages: `enqueue`, `broadcast`, `cancel` and `retry`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from jobs import producer
from jobs.clock import SystemClock
from jobs.errors import InputError
from jobs.model import BROADCAST_AUDIENCE
from jobs.mongo import status
from jobs.mongo.connection import connect
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from jobs.rules import intake, segments
from scheduler.commands.output import (
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    Subparsers,
    command,
    emit,
    operator,
)
from scheduler.settings import Settings, keyring


def register(sub: Subparsers) -> None:
    """`enqueue`, `broadcast`, `cancel` and `retry`."""
    for name, summary, description in (
        ("enqueue", "queue one message",
         "Queue one signed message to --to; refused at once (exit 2) when the daemon would"
         " refuse it: no grant, an ungranted --from, a recipient without consent."),
        ("broadcast", "text every verified recipient",
         "Queue one broadcast to every verified recipient who has not opted out; prints the"
         " campaign id. --dry-run says how many people it would text."),
    ):  # fmt: skip
        cmd = command(sub, name, summary, description)
        cmd.add_argument("--user", required=True, help="the sending user, as granted")
        if name == "enqueue":
            cmd.add_argument("--to", required=True, help="the recipient's number")
        cmd.add_argument("--body", required=True, help="the text")
        cmd.add_argument("--from", dest="source", help="a number granted to the user")
        cmd.add_argument("--key", help="idempotency key: the same key twice is one message")
        cmd.add_argument("--send-at", help="ISO-8601 time, UTC unless it says otherwise")
        cmd.add_argument("--priority", type=int, help="-100 to 100, higher first")
        cmd.add_argument("--json", action="store_true")
        cmd.add_argument("--dry-run", action="store_true", help="show what would go; queue nothing")
        cmd.set_defaults(handler=_enqueue)
    cancel = command(
        sub, "cancel", "stop a message or a whole campaign that has not been sent yet",
        "End `cancelled` everything of a message or campaign not sent yet; what is in flight"
        " finishes. Exit 1 when nothing was left to cancel.",
    )  # fmt: skip
    cancel.add_argument("id", metavar="CAMPAIGN_ID|MESSAGE_ID")
    cancel.add_argument("--by", help="who cancels, for the record (default: the OS user)")
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(handler=_cancel)
    retry = command(
        sub, "retry", "queue failed and unknown messages again",
        "Queue failed and unknown messages again, chosen by id, --campaign and --reason;"
        " consent and grants are checked again when they are sent.",
    )  # fmt: skip
    retry.add_argument("ids", nargs="*", metavar="MESSAGE_ID")
    retry.add_argument("--campaign", help="the failed and unknown messages of this campaign")
    retry.add_argument("--reason", metavar="CODE", help="only those that ended with this reason")
    retry.add_argument("--by", help="who retries, for the record (default: the OS user)")
    retry.add_argument("--json", action="store_true")
    retry.set_defaults(handler=_retry)


def _send_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--send-at {text!r} is not an ISO-8601 date and time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _enqueue(args: argparse.Namespace, settings: Settings) -> int:
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
        emit({"id": str(result.id), "created": result.created}, True)
    else:
        print(result.id)
        if not result.created:
            print(f"key {args.key!r} was already queued as {result.id}", file=sys.stderr)
    return EXIT_OK


def _dry_run(args: argparse.Namespace, settings: Settings) -> int:
    """What the daemon would make of the message; a broadcast also counts its audience."""
    doc = {"user": args.user, "body": args.body, "to": getattr(args, "to", None)}
    if args.command == "broadcast":
        doc.update(to=None, audience=BROADCAST_AUDIENCE)
    doc = {k: v for k, v in doc.items() if v is not None}
    admission = intake.admit(doc, datetime.now(UTC), settings.dispatch.max_segments)
    if admission.problem is not None:
        raise InputError(admission.problem.detail, admission.problem.code)
    text = segments.normalize_text(admission.fields["body"])
    report: dict[str, Any] = {
        "to": admission.fields.get("to"),
        "segments": admission.fields["segments"],
        "encoding": admission.fields["encoding"],
        "characters": segments.measure(text).characters,
        "text": text,
    }
    if args.command == "broadcast":
        report["recipients"] = audience(Directory(connect(settings.mongodb)))
    if args.json:
        emit(report, True)
        return EXIT_OK
    who = f" to {report['recipients']} people" if "recipients" in report else ""
    print(
        f"would send {report['segments']} segment(s){who}, {report['encoding']},"
        f" {report['characters']} characters; nothing was queued"
    )
    if text != args.body:
        print(f"sent as: {text}")
    return EXIT_OK


def audience(directory: Directory) -> int:
    """How many people a broadcast made now would text: one per verified number that has
    not opted out on any of its records."""
    return sum(
        1
        for person in directory.recipients()
        if person.get("verified") and not person.get("opted_out") and not person.get("invalid")
    )


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    store = OutboxStore(connect(settings.mongodb), SystemClock(), settings.mongodb.send_guard)
    store.ensure_indexes()  # a command that writes never leaves a fresh database bare
    doc = store.find(status.parse_id(args.id))
    if doc is None:
        print(f"no message or campaign {args.id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    by = operator(args.by)
    done = store.cancel(doc, by)
    children = store.cancel_campaign(str(doc["_id"]), by) if "audience" in doc else 0
    result = {"id": args.id, "cancelled": done is not None, "messages_cancelled": children}
    if args.json:
        emit(result, True)
    elif done is None and not children:
        print(f"{args.id} is {doc.get('state')}: nothing left to cancel", file=sys.stderr)
    else:
        what = "campaign" if "audience" in doc else "message"
        print(
            f"cancelled {what} {args.id}" + (f" and {children} queued messages" if children else "")
        )
    return EXIT_OK if done is not None or children else EXIT_FAILURE


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    if not (args.ids or args.campaign or args.reason):
        raise InputError("say which messages to retry: MESSAGE_ID..., --campaign or --reason")
    store = OutboxStore(connect(settings.mongodb), SystemClock(), settings.mongodb.send_guard)
    store.ensure_indexes()  # a command that writes never leaves a fresh database bare
    ids = [status.parse_id(i) for i in args.ids] or None
    retried = store.retry(operator(args.by), ids, args.campaign, args.reason)
    if args.json:
        emit({"retried": [str(doc["_id"]) for doc in retried]}, True)
    else:
        emit([str(doc["_id"]) for doc in retried], False)
        print(f"queued {len(retried)} messages again", file=sys.stderr)
    return EXIT_OK if retried else EXIT_NOT_FOUND
