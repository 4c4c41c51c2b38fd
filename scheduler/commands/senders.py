"""`sms-outbox senders`: who may send from which number, and with which signing key."""

from __future__ import annotations

import argparse
import sys

from jobs.mongo.connection import connect
from jobs.mongo.directory import Directory
from scheduler.commands.output import EXIT_NOT_FOUND, EXIT_OK, Subparsers, command, emit
from scheduler.settings import Settings, keyring


def register(sub: Subparsers) -> None:
    """`senders grant|list|revoke`."""
    senders = command(
        sub, "senders", "who may send from which number",
        "Grant a user one of the organisation's numbers (creating the user's signing key),"
        " list the grants, or revoke them.",
    )  # fmt: skip
    actions = senders.add_subparsers(dest="action", required=True, metavar="ACTION")
    grant = command(
        actions, "grant", "allow USER to send from NUMBER",
        "Allow USER to send from NUMBER and create USER's signing key file if it has none.",
    )  # fmt: skip
    grant.add_argument("user", metavar="USER")
    grant.add_argument("number", metavar="NUMBER")
    grant.add_argument(
        "--max-priority", type=int, metavar="N",
        help="the highest priority USER may ask for, 0 to 100 (default 0; higher is lowered)",
    )  # fmt: skip
    listing = command(actions, "list", "list every grant, by user")
    listing.add_argument("--json", action="store_true")
    revoke = command(
        actions, "revoke", "take back USER's grant of NUMBER, or all of USER's grants",
        "Take back USER's grant of NUMBER; without NUMBER, every grant of USER and USER's"
        " signing key file, so nothing USER signed is sent any more. The daemons honour it"
        " from their next batch.",
    )  # fmt: skip
    revoke.add_argument("user", metavar="USER")
    revoke.add_argument("number", nargs="?", metavar="NUMBER")
    senders.set_defaults(handler=_senders)


def _senders(args: argparse.Namespace, settings: Settings) -> int:
    directory = Directory(connect(settings.mongodb))
    if args.action == "grant":
        directory.ensure_indexes()  # a command that writes never leaves a fresh database bare
        source = directory.grant(args.user, args.number, max_priority=args.max_priority)
        print(f"{args.user} may send from {source}")
        if args.max_priority is not None:
            print(f"{args.user} may ask for priorities up to {args.max_priority}")
        if settings.security.require_signatures:
            path = keyring(settings).create_user_key(args.user)
            print(f"{args.user}'s signing key is in {path}; producers sign with it")
        return EXIT_OK
    if args.action == "revoke":
        return _revoke(directory, args, settings)
    senders = directory.senders()
    if args.json:
        emit(senders, True)
    else:
        emit([f"{s.get('user')}\t{s.get('source')}" for s in senders], False)
    return EXIT_OK


def _revoke(directory: Directory, args: argparse.Namespace, settings: Settings) -> int:
    revoked = directory.revoke(args.user, args.number)
    for source in revoked:
        print(f"{args.user} may no longer send from {source}")
    removed_key = False
    if args.number is None:
        path = keyring(settings).path_for(args.user)
        if path.exists():
            path.unlink()
            removed_key = True
            print(f"{args.user}'s signing key {path} is deleted")
        if args.user in settings.security.signing_keys:
            print(
                f"{args.user}'s key is also in security.signing_keys: remove it there",
                file=sys.stderr,
            )
    if not revoked and not removed_key:
        print(f"{args.user} had no such grant", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_OK
