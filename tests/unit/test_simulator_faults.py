"""The simulator tool's injected faults, met by the real Flowroute client."""

from __future__ import annotations

import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from jobs.clock import SystemClock as Clock
from jobs.errors import OptedOutError, RetryableError, UnknownOutcomeError
from jobs.flowroute import FlowrouteClient
from jobs.pacing import SlidingWindowPacer
from jobs.records import FlowrouteRecords
from jobs.simulator.server import FlowrouteSimulator
from scheduler.tryout.simulator import FaultySimulator

KEYS = ("sim-a", "sim-b")


def _client(sim: FlowrouteSimulator, timeout: float = 5.0) -> FlowrouteClient:
    return FlowrouteClient(sim.url, SecretStr(KEYS[0]), SecretStr(KEYS[1]), timeout)


def _sim(**faults: float) -> FaultySimulator:
    rates = (faults.get("fail", 0.0), faults.get("hang", 0.0), faults.get("drop", 0.0))
    return FaultySimulator(
        *KEYS, rates=rates, latency=0.0, hang_seconds=1.0, opted_out=["12065550143"],
        rng=random.Random(7), rate_per_second=None,
    )  # fmt: skip


def test_a_fail_rate_of_one_answers_every_send_with_500() -> None:
    with _sim(fail=1.0) as sim, pytest.raises(RetryableError) as caught:
        _client(sim).send("12065550141", "12065550100", "hi")
    assert caught.value.status == 500 and sim.messages() == []


def test_a_hung_send_is_accepted_but_its_answer_comes_too_late() -> None:
    with _sim(hang=1.0) as sim:
        with pytest.raises(UnknownOutcomeError):
            _client(sim, timeout=0.3).send("12065550141", "12065550100", "hi")
        assert len(sim.messages()) == 1


def test_a_dropped_send_is_not_accepted_and_never_answered_in_time() -> None:
    with _sim(drop=1.0) as sim, pytest.raises(UnknownOutcomeError):
        _client(sim, timeout=0.3).send("12065550141", "12065550100", "hi")
    assert sim.messages() == []


def test_opted_out_numbers_are_refused_with_1110_from_every_sender() -> None:
    with _sim() as sim:
        for source in ("12065550100", "12065550109"):
            with pytest.raises(OptedOutError):
                _client(sim).send("12065550143", source, "hi")
        assert _client(sim).send("12065550141", "12065550100", "hi").startswith("mdr2-")


def test_a_text_posted_through_simulator_inbound_is_a_record_lookups_find() -> None:
    class Thanks(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Thanks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with _sim() as sim:
            sim.sms_callback = f"http://127.0.0.1:{server.server_address[1]}/sms"
            answer = requests.post(
                sim.url + "/simulator/inbound",
                json={"from": "+12065550141", "to": "+12065550100", "body": "STOP"},
                auth=KEYS,
                timeout=5,
            )
            message_id = answer.json()["data"]["id"]
            records = FlowrouteRecords(
                sim.url, SecretStr(KEYS[0]), SecretStr(KEYS[1]), 5.0,
                SlidingWindowPacer(None, Clock()),
            )  # fmt: skip
            record = records.get(message_id)
    finally:
        server.shutdown()
        server.server_close()
    assert (record["direction"], record["from"], record["to"], record["body"]) == (
        "inbound", "12065550141", "12065550100", "STOP",
    )  # fmt: skip
