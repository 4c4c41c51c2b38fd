"""The whole loop on the real server: dispatcher, Flowroute client, receiver and follow-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import SecretStr
from pymongo.database import Database

from jobs.clock import SystemClock
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.dispatch.followup import Check, Followup
from jobs.dispatch.inbound import InboundHandler, ReplyTexts
from jobs.dispatch.optouts import OptOutWatch
from jobs.dispatch.receipts import ReceiptConfig
from jobs.dispatch.reconcile import ReconcileConfig, Reconciler
from jobs.flowroute import FlowrouteClient
from jobs.keys import Signatures
from jobs.mongo.delivery import DeliveryStore
from jobs.mongo.directory import Directory
from jobs.mongo.inbound import InboundLog
from jobs.mongo.inbox import Inbox
from jobs.mongo.store import OutboxStore
from jobs.mongo.tickets import SendTickets
from jobs.pacing import SlidingWindowPacer
from jobs.records import FlowrouteRecords
from jobs.rules import signing
from jobs.rules.confirm import ConfirmConfig
from jobs.simulator.server import FlowrouteSimulator
from jobs.web.receiver import Receiver
from scheduler.surfaces.webhooks import WebhookServer
from tests.conftest import ACCESS_KEY, SECRET_KEY

TOKEN = "/hooks/5b1e0c7d9a8f4e3b2c1d"
SOURCE = "12065550100"
Db = Database[dict[str, Any]]


@dataclass
class Stack:
    db: Db
    store: OutboxStore
    directory: Directory
    dispatcher: Dispatcher
    followup: Followup
    hooks: str
    client: FlowrouteClient

    signatures: Signatures | None = None

    def enqueue(self, to: str, body: str = "hello") -> Any:
        doc: dict[str, Any] = {"_id": self.store.new_id(), "user": "ops", "to": to, "body": body}
        if self.signatures is not None:
            key = self.signatures.keys.user_key("ops")
            assert key is not None
            doc["signature"] = signing.sign(key, doc)
        doc_id = self.store.insert(doc)
        self.dispatcher.admit()
        return doc_id

    def state(self, doc_id: Any) -> str:
        doc = self.db["message_status"].find_one({"_id": doc_id}) or {}
        return str(doc.get("state"))

    def drain(self, rounds: int = 50) -> None:
        """Run cycles and inbox steps until nothing is left to do."""
        for _ in range(rounds):
            report = self.dispatcher.run_once()
            applied = self.followup.apply_inbox()
            if report.idle and applied == 0:
                return


@contextmanager
def stack(
    db: Db,
    simulator: FlowrouteSimulator,
    recipients: list[str],
    *,
    timeout: float = 5.0,
    receipts: ReceiptConfig | None = None,
    max_attempts: int = 5,
    signatures: Signatures | None = None,
    **followup: Any,
) -> Iterator[Stack]:
    clock = SystemClock()
    store = OutboxStore(db, clock, sealer=signatures)  # as the daemon wires it
    store.ensure_indexes()
    directory = Directory(db)
    directory.ensure_indexes()
    directory.grant("ops", SOURCE)
    for number in recipients:
        directory.add(number, verified=True, now=clock.now())
    inbox = Inbox(db)
    server = WebhookServer(Receiver(inbox, TOKEN, clock, 65536), "127.0.0.1:0").start()
    hooks = f"http://127.0.0.1:{server.port}{TOKEN}"
    key, secret = SecretStr(ACCESS_KEY), SecretStr(SECRET_KEY)
    client = FlowrouteClient(simulator.url, key, secret, timeout, dlr_callback=hooks + "/dlr")
    config = DispatchConfig(lease_seconds=timeout + 30, max_attempts=max_attempts)
    dispatcher = Dispatcher(
        store, directory, client, SlidingWindowPacer(None, clock), clock, config, signatures
    )
    records = FlowrouteRecords(simulator.url, key, secret, 5.0, SlidingWindowPacer(50, clock))
    receipt_config = receipts or ReceiptConfig(
        poll_after=timedelta(0),
        unknown_id_retry=timedelta(seconds=0.2),
        # The simulator's records are visible at once: a missing one is absent.
        confirm=ConfirmConfig(lookups_per_cycle=10, visible_within=timedelta(0)),
    )
    delivery = DeliveryStore(store, directory)
    reconcile = ReconcileConfig(
        after=timedelta(0),
        clock_skew=timedelta(seconds=1),
        request_timeout=timedelta(seconds=timeout),
        retry=timedelta(0),
        visibility=timedelta(0),
    )

    def release(doc: dict[str, Any]) -> bool:
        return store.spent.proven_not_sent(signing.signed_id(doc) or str(doc["_id"]), doc["_id"])

    def spent(doc: dict[str, Any]) -> dict[str, Any] | None:
        return store.spent.record_of(signing.signed_id(doc) or str(doc["_id"]), doc["_id"])

    tickets = store.guard
    assert isinstance(tickets, SendTickets)
    checks: list[Check] = [
        Reconciler(
            delivery,
            tickets,
            tickets.in_doubt_spans,
            release,
            directory,
            records,
            clock,
            reconcile,
            spent,
        )
    ]
    inbound = InboundLog(db)
    checks.append(OptOutWatch(inbound, clock, 0.05))
    handler = InboundHandler(
        store, directory, inbound, clock, ReplyTexts(), signatures, config=receipt_config.confirm
    )
    follow = Followup(
        delivery, inbox, clock, receipt_config, records, checks=checks, inbound=handler,
        inbound_log=inbound, **followup,
    )  # fmt: skip
    follow.ensure_indexes()
    try:
        yield Stack(db, store, directory, dispatcher, follow, hooks, client, signatures)
    finally:
        server.close()
        client.close()
