"""The simulator loses answers, drops connections and posts receipts and inbound messages."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from jobs.simulator.server import FlowrouteSimulator

AUTH = ("demo-access-key", "demo-secret-key")
SENDER, RECIPIENT = "12065550100", "13125550199"


class Catcher:
    """A local HTTP endpoint that records every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, Any]] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                catcher.posts.append((self.path, self.headers["Content-Type"], json.loads(raw)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sim() -> Iterator[FlowrouteSimulator]:
    with FlowrouteSimulator(rate_per_second=None) as simulator:
        yield simulator


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    endpoint = Catcher()
    yield endpoint
    endpoint.close()


def send(sim: FlowrouteSimulator, dlr: str | None = None, timeout: float = 5.0) -> Any:
    attributes = {"to": RECIPIENT, "from": SENDER, "body": "hello", "dlr_callback": dlr}
    return requests.post(
        sim.url + "/v2.1/messages",
        json={"data": {"type": "message", "attributes": attributes}},
        auth=AUTH,
        headers={"Content-Type": "application/vnd.api+json"},
        timeout=timeout,
    )


def test_dropped_before_accepting_closes_the_connection_and_records_nothing(
    sim: FlowrouteSimulator,
) -> None:
    sim.set_faults(drop_before=0.999999, seed=1)
    with pytest.raises(requests.ConnectionError):
        send(sim)
    assert sim.messages() == []


def test_dropped_after_accepting_closes_the_connection_but_records_the_message(
    sim: FlowrouteSimulator,
) -> None:
    sim.set_faults(drop_after=0.999999, seed=1)
    with pytest.raises(requests.ConnectionError):
        send(sim)
    assert len(sim.messages()) == 1


def test_a_lost_answer_accepts_the_message_and_never_answers_in_time(
    sim: FlowrouteSimulator,
) -> None:
    sim.set_faults(lose_answers=0.999999, lost_answer_seconds=30, seed=1)
    with pytest.raises(requests.Timeout):
        send(sim, timeout=0.5)
    assert len(sim.messages()) == 1


def test_fault_rates_are_drawn_per_send() -> None:
    with FlowrouteSimulator(rate_per_second=None) as sim:
        sim.set_faults(drop_before=0.5, seed=7)
        outcomes = []
        for _ in range(40):
            try:
                outcomes.append(send(sim).status_code)
            except requests.ConnectionError:
                outcomes.append(0)
        assert 5 < outcomes.count(0) < 35
        assert len(sim.messages()) == outcomes.count(202)


def test_rates_over_one_are_refused(sim: FlowrouteSimulator) -> None:
    with pytest.raises(ValueError):
        sim.set_faults(lose_answers=0.6, drop_after=0.6)


def test_receipts_go_to_the_dlr_callback_level_1_then_2_and_show_in_the_record(
    sim: FlowrouteSimulator, catcher: Catcher
) -> None:
    message_id = send(sim, dlr=catcher.url + "/hook/dlr").json()["data"]["id"]

    assert sim.post_receipts(final_status="delivery failure", final_code=1201) == [200, 200]

    levels = [(p[2]["data"]["attributes"]["level"], p[2]["data"]["type"]) for p in catcher.posts]
    assert levels == [(1, "delivery_receipt"), (2, "delivery_receipt")]
    assert {p[0] for p in catcher.posts} == {"/hook/dlr"}
    final = catcher.posts[1][2]["data"]
    assert final["id"] == message_id
    assert final["attributes"]["status"] == "delivery failure"
    assert final["attributes"]["status_code"] == 1201
    record = requests.get(f"{sim.url}/v2.1/messages/{message_id}", auth=AUTH, timeout=5).json()
    receipts = record["data"]["attributes"]["delivery_receipts"]
    assert [r["level"] for r in receipts] == [2, 1]  # newest first
    assert record["data"]["attributes"]["status"] == "delivery failure"


def test_receipts_can_come_reversed_twice_and_flat(
    sim: FlowrouteSimulator, catcher: Catcher
) -> None:
    send(sim, dlr=catcher.url + "/dlr")

    sim.post_receipts(reverse=True, duplicate=True, flat=True)

    assert [p[2]["level"] for p in catcher.posts] == [2, 2, 1, 1]
    assert {p[1] for p in catcher.posts} == {"application/json"}


def test_inbound_is_posted_to_the_sms_callback_and_listed(
    sim: FlowrouteSimulator, catcher: Catcher
) -> None:
    sim.sms_callback = catcher.url + "/in"

    status, message_id = sim.send_inbound("+13125550199", SENDER, "STOP")

    assert status == 200
    path, content_type, document = catcher.posts[0]
    assert (path, content_type) == ("/in", "application/vnd.api+json")
    attributes = document["data"]["attributes"]
    assert (attributes["from"], attributes["to"], attributes["body"]) == (RECIPIENT, SENDER, "STOP")
    assert attributes["direction"] == "inbound"
    assert document["data"]["id"] == message_id
    listed = requests.get(
        f"{sim.url}/v2.1/messages", params={"start_date": "2000-01-01"}, auth=AUTH, timeout=5
    ).json()["data"]
    assert [(r["id"], r["attributes"]["direction"]) for r in listed] == [(message_id, "inbound")]


def test_an_inbound_text_is_a_record_flowroute_serves_by_id(
    sim: FlowrouteSimulator, catcher: Catcher
) -> None:
    sim.sms_callback = catcher.url + "/in"
    _, posted = sim.send_inbound("+13125550199", SENDER, "START")
    kept = sim.record_inbound("+13125550199", SENDER, "HELP").id

    for message_id, body in ((posted, "START"), (kept, "HELP")):
        found = requests.get(f"{sim.url}/v2.1/messages/{message_id}", auth=AUTH, timeout=5)
        assert found.status_code == 200
        attributes = found.json()["data"]["attributes"]
        assert (attributes["direction"], attributes["from"], attributes["to"]) == (
            "inbound", RECIPIENT, SENDER,
        )  # fmt: skip
        assert attributes["body"] == body
    missing = requests.get(f"{sim.url}/v2.1/messages/mdr2-{'0' * 32}", auth=AUTH, timeout=5)
    assert missing.status_code == 404
    assert len(catcher.posts) == 1


def test_a_callback_nobody_answers_reports_0(sim: FlowrouteSimulator) -> None:
    send(sim, dlr="http://127.0.0.1:9/dlr")
    assert sim.post_receipts() == [0, 0]
