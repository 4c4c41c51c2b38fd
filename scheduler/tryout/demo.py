"""The demo: the real daemon on an in-process database and a built-in Flowroute simulator."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from jobs import producer
from jobs.clock import Clock, SystemClock
from jobs.keys import KeyRing
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from jobs.simulator.server import FlowrouteSimulator
from scheduler import logs
from scheduler.daemon import Daemon
from scheduler.sections import (
    DispatchSettings,
    FlowrouteSettings,
    QuietHoursSettings,
    SecuritySettings,
)
from scheduler.settings import Settings
from scheduler.wiring import build_dispatcher

BANNER = """\
==========================================================================
  sms-outbox DEMO: in-process database, built-in Flowroute simulator.
  Nothing here reaches a phone or Flowroute; the numbers are fictional.
  Quiet hours are off so the demo sends at any hour.
==========================================================================
"""
SETUP = """\
1. Set up: user {sender} may send from {source}.
   Five people opted in ({first} to {last}),
   {not_verified} never gave consent, and {opted_out} opted out.
2. Queued: a broadcast "{body}" to everyone who opted in,
   signed with {sender}'s key; a message to {not_verified}; and a document
   written straight into the database without a signature, as an intruder
   with write access to the database could.
3. Ran the daemon until nothing was due: it checked every message, paced the
   sends to Flowroute's 5 per second, and recorded each outcome.
"""
WHY = {
    "sent": "accepted by Flowroute (the simulator)",
    "signature": "refused: not signed with the sender's key, so never sent",
    "opted_out": "refused: this person opted out, so no sender may text them",
    "not_verified": "refused: no consent on record",
}
NEXT = """
Every message ended in a state with a reason, kept in `message_status` for any
client to read. Nothing was sent to a real phone.
Next: "Try it" in the README runs the same daemon on a real database, with
receipts and a STOP, still without a Flowroute account."""
SENDER, SOURCE = "demo-staff", "12065550100"
VERIFIED = [f"1206555{n:04d}" for n in range(101, 106)]
NOT_VERIFIED, OPTED_OUT = "12065550199", "12065550198"


def run_demo() -> int:
    """Seed a throw-away database, broadcast once, run the daemon until idle, print the result."""
    try:
        import mongomock

        from jobs.mongo.mongomock_compat import accept_sort_keyword
    except ImportError:
        print("sms-outbox demo needs the demo extra: python3 -m pip install '.[demo]'",
              file=sys.stderr)  # fmt: skip
        return 2
    print(BANNER)
    # The daemon's events would bury the story; `sms-outbox run` logs each one.
    logs.configure("warning", "console", stream=sys.stderr)
    keys_dir = Path(tempfile.mkdtemp(prefix="sms-outbox-demo-keys-"))
    keys = KeyRing(keys_dir)
    clock = SystemClock()
    accept_sort_keyword()
    db: Any = mongomock.MongoClient(tz_aware=True)["sms_outbox_demo"]
    body = "Demo: the pool opens at 9."
    campaign = _seed(db, keys, clock, body)
    accepted = _send(db, keys_dir, clock)
    _explain(db, accepted, body)
    shutil.rmtree(keys_dir, ignore_errors=True)
    print(NEXT)
    print(f"\n(campaign id {campaign.id})")
    print("DEMO finished: nothing was sent to a real phone.")
    return 0


def _seed(db: Any, keys: KeyRing, clock: Clock, body: str) -> producer.Enqueued:
    """The sender and the people, the broadcast and the message without consent, and a
    document written straight into the database by someone without the sender's key."""
    directory, store = Directory(db), OutboxStore(db, clock)
    now = clock.now()
    directory.grant(SENDER, SOURCE)
    keys.create_user_key(SENDER)
    key = keys.user_key(SENDER)
    for number in VERIFIED:
        directory.add(number, verified=True, now=now, by="demo")
    directory.add(NOT_VERIFIED, verified=False, now=now)
    directory.add(OPTED_OUT, verified=True, now=now, by="demo")
    directory.opt_out(OPTED_OUT, now=now, reason="demo: replied STOP")
    campaign = producer.broadcast(store, user=SENDER, body=body, now=now, sign_key=key)
    producer.enqueue(
        store, user=SENDER, to=NOT_VERIFIED, body="Never sent: no consent", now=now, sign_key=key
    )
    # Someone with write access to the database, posing as the sender without its key.
    db["outbox"].insert_one({"user": SENDER, "to": VERIFIED[0], "body": "spam"})
    return campaign


def _send(db: Any, keys_dir: Path, clock: Clock) -> int:
    """Run the daemon against the simulator until nothing is due; how many texts it accepted."""
    with FlowrouteSimulator("demo-access-key", "demo-secret-key", rate_per_second=5) as sim:
        settings = Settings(
            flowroute=FlowrouteSettings(
                access_key=SecretStr("demo-access-key"),
                secret_key=SecretStr("demo-secret-key"),
                base_url=sim.url,
            ),
            # One daemon on an in-memory database: there is no fleet to share the limit with.
            dispatch=DispatchSettings(poll_seconds=0.2, pacing="local"),
            security=SecuritySettings(keys_dir=keys_dir),
            # Off so the demo sends at any hour; a real daemon waits for the recipient's daytime.
            quiet_hours=QuietHoursSettings(enabled=False),
        )
        dispatcher = build_dispatcher(settings, db, clock=clock)
        Daemon(dispatcher, settings.dispatch.poll_seconds, until_idle=True).run()
        return len(sim.messages())


def _explain(db: Any, accepted: int, body: str) -> None:
    """What the demo set up, and what became of each message and why."""
    print(SETUP.format(sender=SENDER, source=SOURCE, first=VERIFIED[0], last=VERIFIED[-1],
                       not_verified=NOT_VERIFIED, opted_out=OPTED_OUT, body=body))  # fmt: skip
    print(f"4. What became of each message (the simulator accepted {accepted}):\n")
    print(f"{'to':<13}{'state':<10}{'reason or id':<19}why")
    for doc in db["message_status"].find({"kind": "message"}).sort("to", 1):
        error = doc.get("error") or {}
        detail = str(doc.get("provider_id") or error.get("code"))
        detail = detail if len(detail) < 18 else detail[:16] + "…"
        why = WHY.get(str(error.get("code") or doc["state"]), str(error.get("detail")))
        print(f"{doc.get('to')!s:<13}{doc['state']:<10}{detail:<19}{why}")
