"""The commands for trying sms-outbox without an account: `demo` and `simulator`. They run
without the settings, and load the simulator and mongomock only when they run."""

from __future__ import annotations

import argparse

from scheduler.commands.output import Subparsers, command


def register(sub: Subparsers) -> None:
    """`demo` and `simulator`."""
    demo = command(
        sub, "demo", "run a self-contained demo: nothing real is sent",
        "Run the real daemon once on an in-process database against a built-in Flowroute"
        " simulator, and explain what it did with each message. Needs no server and no"
        " settings (install with the [demo] extra).",
    )  # fmt: skip
    demo.set_defaults(standalone=_demo)
    sim = command(
        sub, "simulator", "run a local Flowroute stand-in for trying sms-outbox without an account",
        "Serve a local stand-in for Flowroute's v2.1 messaging API, with faults on request,"
        " delivery receipts and inbound texts, and print the settings that point sms-outbox"
        " at it. Nothing reaches a phone. Ctrl-C stops it.",
    )  # fmt: skip
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
    sim.set_defaults(standalone=_simulator)


def _demo(args: argparse.Namespace) -> int:
    from scheduler.tryout.demo import run_demo

    return run_demo()


def _simulator(args: argparse.Namespace) -> int:
    from scheduler.tryout.simulator import run_simulator

    return run_simulator(args)
