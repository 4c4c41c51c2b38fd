"""Flowroute's callbacks through the receiver served on waitress, into the inbox on the server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import requests
from pymongo.database import Database

from jobs.clock import SystemClock
from jobs.mongo.inbox import Inbox
from jobs.simulator.callbacks import inbound_document
from jobs.simulator.server import FlowrouteSimulator
from jobs.web.receiver import Receiver
from scheduler.surfaces.webhooks import WebhookServer

TOKEN = "/hooks/5b1e0c7d9a8f4e3b2c1d"
SOURCE, RECIPIENT = "12065550100", "13125550199"


@pytest.fixture
def hooks(db: Database[dict[str, Any]]) -> Iterator[str]:
    """The receiver on a free local port; yields its public URL."""
    server = WebhookServer(Receiver(Inbox(db), TOKEN, SystemClock(), 65536), "127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}{TOKEN}"
    finally:
        server.close()


def sim_send(sim: FlowrouteSimulator, dlr: str) -> str:
    attributes = {"to": RECIPIENT, "from": SOURCE, "body": "hello", "dlr_callback": dlr}
    response = requests.post(
        sim.url + "/v2.1/messages",
        json={"data": {"type": "message", "attributes": attributes}},
        auth=("test-access-key-7f3a", "test-secret-key-91c2"),
        headers={"Content-Type": "application/vnd.api+json"},
        timeout=5,
    )
    return str(response.json()["data"]["id"])


def test_receipts_and_inbound_messages_land_in_the_inbox(
    db: Database[dict[str, Any]], simulator: FlowrouteSimulator, hooks: str
) -> None:
    message_id = sim_send(simulator, hooks + "/dlr")
    assert simulator.post_receipts(duplicate=True) == [200] * 4
    assert simulator.send_inbound(RECIPIENT, SOURCE, "HELP", url=hooks + "/inbound")[0] == 200

    kinds = sorted(e["kind"] for e in db["inbox"].find())
    assert kinds == ["dlr"] * 4 + ["inbound"]
    assert {e["fields"]["provider_id"] for e in db["inbox"].find({"kind": "dlr"})} == {message_id}


def test_a_wrong_path_is_404_and_writes_nothing(
    db: Database[dict[str, Any]], simulator: FlowrouteSimulator, hooks: str
) -> None:
    sim_send(simulator, hooks + "x/dlr")
    root = hooks.rsplit("/", 1)[0]
    assert simulator.post_receipts() == [404, 404]
    assert simulator.send_inbound(RECIPIENT, SOURCE, "HI", url=root + "/inbound")[0] == 404
    too_big = requests.post(hooks + "/dlr", data=b"x" * 70000, timeout=5)
    assert too_big.status_code == 413
    assert db["inbox"].count_documents({}) == 0


def test_a_hundred_idle_connections_do_not_keep_a_stop_out(
    db: Database[dict[str, Any]], hooks: str
) -> None:
    port = int(hooks.split(":")[2].split("/")[0])
    with ExitStack() as idle:
        for _ in range(105):
            # Connected, and never a byte: what a slow-connection flood looks like.
            idle.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        stop = inbound_document(
            "mdr2-" + "ab" * 16, RECIPIENT, SOURCE, "STOP", SystemClock().now(), flat=False
        )
        answer = requests.post(hooks + "/inbound", json=stop, timeout=5)
    assert answer.status_code == 200
    assert db["inbox"].count_documents({"fields.body": "STOP"}) == 1


def test_an_idle_connection_is_closed_by_the_receiver(db: Database[dict[str, Any]]) -> None:
    server = WebhookServer(
        Receiver(Inbox(db), TOKEN, SystemClock(), 65536), "127.0.0.1:0", channel_timeout=1.0
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            assert idle.recv(1) == b""  # closed by the server well before our own timeout
    finally:
        server.close()
