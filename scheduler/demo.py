"""The demo: the real daemon on an in-process database and a built-in Flowroute simulator."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import mongomock
from pydantic import SecretStr

from jobs import producer
from jobs.clock import SystemClock
from jobs.doubles.mongomock_compat import accept_sort_keyword
from jobs.doubles.simulator import FlowrouteSimulator
from jobs.keys import KeyRing
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from scheduler import logs
from scheduler.daemon import Daemon, build_dispatcher
from scheduler.settings import (
    DispatchSettings,
    FlowrouteSettings,
    QuietHoursSettings,
    SecuritySettings,
    Settings,
)

BANNER = """\
==========================================================================
  sms-outbox DEMO: in-process database, built-in Flowroute simulator.
  Nothing here reaches a phone or Flowroute; the numbers are fictional.
  Quiet hours are off so the demo sends at any hour.
==========================================================================
"""
SENDER, SOURCE = "demo-staff", "12065550100"
VERIFIED = [f"1206555{n:04d}" for n in range(101, 106)]
NOT_VERIFIED, OPTED_OUT = "12065550199", "12065550198"


def run_demo() -> int:
    """Seed a throw-away database, broadcast once, run the daemon until idle, print the result."""
    print(BANNER)
    logs.configure("info", "console", stream=sys.stderr)
    keys_dir = Path(tempfile.mkdtemp(prefix="sms-outbox-demo-keys-"))
    keys = KeyRing(keys_dir)
    clock = SystemClock()
    accept_sort_keyword()
    db: Any = mongomock.MongoClient(tz_aware=True)["sms_outbox_demo"]
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
    body = "Demo: the pool opens at 9."
    campaign = producer.broadcast(store, user=SENDER, body=body, now=now, sign_key=key)
    producer.enqueue(
        store, user=SENDER, to=NOT_VERIFIED, body="Never sent: no consent", now=now, sign_key=key
    )
    # Someone with write access to the database, posing as the sender without its key.
    db["outbox"].insert_one({"user": SENDER, "to": VERIFIED[0], "body": "spam"})

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
        accepted = len(sim.messages())

    print(f"\ncampaign {campaign.id}; the simulator accepted {accepted} messages\n")
    print(f"{'to':<13}{'state':<10}{'detail'}")
    for doc in db["message_status"].find({"kind": "message"}).sort("to", 1):
        error = doc.get("error") or {}
        detail = doc.get("provider_id") or f"{error.get('code')}: {error.get('detail')}"
        print(f"{doc.get('to')!s:<13}{doc['state']:<10}{detail}")
    shutil.rmtree(keys_dir, ignore_errors=True)
    print("\nDEMO finished: nothing was sent to a real phone.")
    return 0
