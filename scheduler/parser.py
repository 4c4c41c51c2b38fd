"""The `sms-outbox` command line: its commands and options, and nothing else."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from scheduler.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    """The command line; `handlers` maps each command name to the function that runs it."""
    parser = argparse.ArgumentParser(
        prog="sms-outbox", description="Send opt-in SMS through Flowroute from a MongoDB outbox."
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (or $SMS_OUTBOX_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--until-idle", action="store_true", help="exit once nothing is due")
    run.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    run.set_defaults(handler=handlers["run"])
    hooks = sub.add_parser("webhooks", help="serve the webhook receiver alone")
    hooks.set_defaults(handler=handlers["webhooks"])
    sub.add_parser("demo", help="run a self-contained demo: nothing real is sent")
    health = sub.add_parser("check", help="ping the database: exit 0 if it answers, 69 if not")
    health.set_defaults(handler=handlers["check"])
    init = sub.add_parser("init", help="create the indexes (idempotent)")
    init.add_argument("--roles", action="store_true", help="also create the database roles")
    init.set_defaults(handler=handlers["init"])

    senders = sub.add_parser("senders", help="who may send from which number")
    sender_actions = senders.add_subparsers(dest="action", required=True)
    grant = sender_actions.add_parser("grant", help="allow USER to send from NUMBER")
    grant.add_argument("user")
    grant.add_argument("number")
    sender_list = sender_actions.add_parser("list", help="list grants")
    sender_list.add_argument("--json", action="store_true")
    senders.set_defaults(handler=handlers["senders"])

    recipients = sub.add_parser("recipients", help="who may be texted")
    actions = recipients.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add recipients")
    add.add_argument("numbers", nargs="+", metavar="NUMBER")
    add.add_argument("--verified", action="store_true", help="they have opted in")
    verify = actions.add_parser("verify", help="record that NUMBER opted in")
    verify.add_argument("number")
    verify.add_argument("--source", default="cli", help="how consent was given")
    opt_out = actions.add_parser("opt-out", help="never text NUMBER again, from any sender")
    opt_out.add_argument("number")
    opt_out.add_argument("--reason", default="requested", help="why, for the record")
    imp = actions.add_parser("import", help="add the numbers in a CSV file's first column")
    imp.add_argument("file")
    imp.add_argument("--verified", action="store_true", help="every number has opted in")
    rlist = actions.add_parser("list", help="list recipients, one line per number")
    rlist.add_argument("--json", action="store_true")
    check = actions.add_parser(
        "check", help="report numbers stored several ways, opt-out conflicts and bad phones"
    )
    check.add_argument(
        "--fix", action="store_true", help="merge each number's records into one, keeping evidence"
    )
    check.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="NUMBER's whole consent history, with its evidence")
    show.add_argument("number")
    show.add_argument("--json", action="store_true")
    export = actions.add_parser("export", help="write every consent history as CSV, for an audit")
    export.add_argument("--evidence", action="store_true", required=True,
                        help="one row per consent, opt-out, sign-up step and text")  # fmt: skip
    export.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    recipients.set_defaults(handler=handlers["recipients"])

    for name, help_text in (
        ("enqueue", "queue one message"),
        ("broadcast", "text every verified recipient"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--user", required=True)
        if name == "enqueue":
            cmd.add_argument("--to", required=True)
        cmd.add_argument("--body", required=True)
        cmd.add_argument("--from", dest="source", help="a number granted to the user")
        cmd.add_argument("--key", help="idempotency key: the same key twice is one message")
        cmd.add_argument("--send-at", help="ISO-8601 time, UTC unless it says otherwise")
        cmd.add_argument("--priority", type=int, help="-100 to 100, higher first")
        cmd.add_argument("--json", action="store_true")
        cmd.add_argument("--dry-run", action="store_true", help="show segments; queue nothing")
        cmd.set_defaults(handler=handlers["enqueue"])

    cancel = sub.add_parser(
        "cancel", help="stop a message or a whole campaign that has not been sent yet"
    )
    cancel.add_argument("id", metavar="CAMPAIGN_ID|MESSAGE_ID")
    cancel.add_argument("--by", help="who cancels, for the record (default: the OS user)")
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(handler=handlers["cancel"])

    retry = sub.add_parser("retry", help="queue failed and unknown messages again")
    retry.add_argument("ids", nargs="*", metavar="MESSAGE_ID")
    retry.add_argument("--campaign", help="the failed and unknown messages of this campaign")
    retry.add_argument("--reason", metavar="CODE", help="only those that ended with this reason")
    retry.add_argument("--by", help="who retries, for the record (default: the OS user)")
    retry.add_argument("--json", action="store_true")
    retry.set_defaults(handler=handlers["retry"])

    stat = sub.add_parser(
        "status",
        help="a message's status, a campaign's counts, or (alone) the account and opt-out rates",
    )
    stat.add_argument("id", nargs="?")
    stat.add_argument("--campaign")
    output = stat.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true", help="one row per recipient (--campaign)")
    stat.add_argument("--watch", action="store_true", help="follow the campaign live until it ends")
    stat.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (--watch)"
    )
    stat.set_defaults(handler=handlers["status"])

    camps = sub.add_parser("campaigns", help="recent campaigns with their progress")
    camps.add_argument("--limit", type=int, default=20)
    camps.add_argument("--json", action="store_true")
    camps.set_defaults(handler=handlers["campaigns"])

    dash = sub.add_parser("dashboard", help="serve the read-only web dashboard")
    dash.add_argument("--listen", help="HOST:PORT (default: dashboard.listen)")
    dash.set_defaults(handler=handlers["dashboard"])

    web = sub.add_parser("web", help="serve the public sign-up page (/join)")
    web.add_argument("--listen", help="HOST:PORT (default: optin.listen)")
    web.set_defaults(handler=handlers["web"])

    sim = sub.add_parser(
        "simulator", help="run a local Flowroute stand-in for trying sms-outbox without an account"
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--rate", type=int, default=5, help="requests per second (0: no limit)")
    sim.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    sim.add_argument("--fail-rate", type=float, default=0.0, help="share answered 500")
    sim.add_argument(
        "--hang-rate", type=float, default=0.0,
        help="share accepted but answered only after --hang-seconds (the sender times out)",
    )  # fmt: skip
    sim.add_argument(
        "--drop-rate", type=float, default=0.0,
        help="share not accepted and answered only after --hang-seconds",
    )  # fmt: skip
    sim.add_argument("--hang-seconds", type=float, default=30.0)
    sim.add_argument(
        "--opted-out", nargs="+", default=[], metavar="NUMBER",
        help="recipients who texted STOP: sends to them get 400 with error 1110",
    )  # fmt: skip
    sim.add_argument(
        "--receipts-to", metavar="URL",
        help="post each accepted message's receipts here (default: the message's dlr_callback)",
    )  # fmt: skip
    sim.add_argument(
        "--receipt-delay", type=float, default=0.5, metavar="SECONDS",
        help="how long after accepting a message its receipts are posted",
    )  # fmt: skip
    sim.add_argument(
        "--undelivered", nargs="+", default=[], metavar="NUMBER",
        help="recipients whose messages are accepted but get a final 'delivery failure' receipt",
    )  # fmt: skip
    sim.add_argument(
        "--inbound-to", metavar="URL",
        help="the SMS callback: POST /simulator/inbound forwards texts here as Flowroute would",
    )  # fmt: skip
    sim.add_argument("--access-key", default="sim-access-key")
    sim.add_argument("--secret-key", default="sim-secret-key")
    sim.set_defaults(handler=handlers["simulator"])
    return parser
