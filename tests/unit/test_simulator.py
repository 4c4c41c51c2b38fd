"""The Flowroute simulator answers like Messaging API v2.1, driven over real HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from jobs.simulator.server import FlowrouteSimulator

AUTH = ("demo-access-key", "demo-secret-key")
JSON_API = "application/vnd.api+json"
SENDER = "12065550100"
RECIPIENT = "13125550199"
MDR2_ID = re.compile(r"mdr2-[0-9a-f]{32}")


@pytest.fixture
def sim() -> Iterator[FlowrouteSimulator]:
    with FlowrouteSimulator(rate_per_second=None) as simulator:
        yield simulator


def send(
    sim: FlowrouteSimulator,
    *,
    to: Any = "+" + RECIPIENT,
    from_: Any = SENDER,
    body: Any = "hello",
    flat: bool = False,
    auth: tuple[str, str] | None = AUTH,
    content_type: str | None = None,
    timeout: float = 5.0,
) -> requests.Response:
    attributes = {"to": to, "from": from_, "body": body}
    document: dict[str, Any] = (
        attributes if flat else {"data": {"type": "message", "attributes": attributes}}
    )
    return requests.post(
        sim.url + "/v2.1/messages",
        json=document,
        auth=auth,
        headers={"Content-Type": content_type or ("application/json" if flat else JSON_API)},
        timeout=timeout,
    )


def error_of(response: requests.Response) -> dict[str, Any]:
    errors = response.json()["errors"]
    assert len(errors) == 1
    error: dict[str, Any] = errors[0]
    assert error["status"] == response.status_code
    assert error["id"] and error["title"]
    return error


def test_accepts_json_api_body_and_returns_mdr2_id(sim: FlowrouteSimulator) -> None:
    before = datetime.now(UTC)

    response = send(sim, body="hello there")

    assert response.status_code == 202
    assert response.headers["Content-Type"] == JSON_API
    data = response.json()["data"]
    assert MDR2_ID.fullmatch(data["id"])
    assert data["type"] == "message"
    assert data["links"]["self"] == f"{sim.url}/v2.1/messages/{data['id']}"
    [message] = sim.messages()
    assert (message.id, message.to, message.from_) == (data["id"], RECIPIENT, SENDER)
    assert (message.body, message.dlr_callback, message.content_type) == (
        "hello there",
        None,
        JSON_API,
    )
    assert before <= message.timestamp <= datetime.now(UTC)


def test_accepts_flat_body(sim: FlowrouteSimulator) -> None:
    response = requests.post(
        sim.url + "/v2.1/messages",
        json={"to": RECIPIENT, "from": "+" + SENDER, "body": "hi", "dlr_callback": "http://x/dlr"},
        auth=AUTH,
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=5,
    )

    assert response.status_code == 202
    [message] = sim.messages()
    assert (message.from_, message.dlr_callback) == (SENDER, "http://x/dlr")
    assert message.content_type == "application/json"


@pytest.mark.parametrize(
    "auth", [("demo-access-key", "wrong"), ("someone-else", "demo-secret-key")]
)
def test_rejects_wrong_credentials_with_401(sim: FlowrouteSimulator, auth: tuple[str, str]) -> None:
    response = send(sim, auth=auth)

    assert response.status_code == 401
    error_of(response)
    assert sim.messages() == []
    assert sim.attempts() == 1


def test_rejects_missing_credentials_with_401(sim: FlowrouteSimulator) -> None:
    assert send(sim, auth=None).status_code == 401


def test_rejects_other_content_type_with_415(sim: FlowrouteSimulator) -> None:
    response = send(sim, content_type="text/plain")

    assert response.status_code == 415
    error_of(response)
    assert sim.messages() == []


def test_malformed_json_is_400(sim: FlowrouteSimulator) -> None:
    response = requests.post(
        sim.url + "/v2.1/messages",
        data=b'{"to": ',
        auth=AUTH,
        headers={"Content-Type": JSON_API},
        timeout=5,
    )

    assert response.status_code == 400
    error_of(response)


@pytest.mark.parametrize(
    ("field", "value"),
    [("to", "3125550199"), ("to", "+44 20 7946 0958"), ("from", "1206555010"), ("to", 13125550199)],
)
def test_invalid_number_is_422(sim: FlowrouteSimulator, field: str, value: Any) -> None:
    response = send(sim, **{"to" if field == "to" else "from_": value})

    assert response.status_code == 422
    assert f"'{field}'" in error_of(response)["detail"]
    assert sim.messages() == []


@pytest.mark.parametrize("body", ["", None])
def test_empty_or_missing_body_is_422(sim: FlowrouteSimulator, body: str | None) -> None:
    response = send(sim, body=body)

    assert response.status_code == 422
    assert "'body'" in error_of(response)["detail"]


def test_unowned_from_is_403() -> None:
    with FlowrouteSimulator(rate_per_second=None, owned_numbers=["+" + SENDER]) as sim:
        refused = send(sim, from_="12065550101")
        accepted = send(sim, from_=SENDER)

    assert refused.status_code == 403
    error_of(refused)
    assert accepted.status_code == 202
    assert [m.from_ for m in sim.messages()] == [SENDER]


def test_opted_out_pair_gets_1110(sim: FlowrouteSimulator) -> None:
    sim.opt_out("+" + SENDER, RECIPIENT)

    refused = send(sim)
    other_sender = send(sim, from_="12065550101")

    assert refused.status_code == 400
    error = error_of(refused)
    assert error["code"] == 1110
    assert "opted out" in error["detail"]
    assert other_sender.status_code == 202
    assert [m.from_ for m in sim.messages()] == ["12065550101"]


def test_sixth_attempt_in_a_second_is_429_and_counts() -> None:
    with FlowrouteSimulator(rate_per_second=5) as sim, requests.Session() as session:
        session.auth = AUTH
        statuses = [
            session.post(
                sim.url + "/v2.1/messages",
                json={"to": RECIPIENT, "from": SENDER, "body": "x"},
                timeout=5,
            ).status_code
            for _ in range(12)
        ]
        times = sim.attempt_times()

        # Judged by the arrival times, not by how fast this machine sent: an attempt is refused
        # when five or more attempts, refused ones included, arrived in the second before it.
        expected = [
            429 if sum(1 for t in times[:i] if times[i] - t < 1.0) >= 5 else 202
            for i in range(len(times))
        ]
        assert statuses == expected
        assert times[5] - times[0] < 1.0, "six requests took a second: nothing was tested"
        assert statuses[:6] == [202] * 5 + [429]
        assert sim.attempts() == len(statuses) == 12
        assert len(sim.messages()) == statuses.count(202)

        time.sleep(max(0.0, times[-1] + 1.0 - time.monotonic()))
        recovered = session.post(
            sim.url + "/v2.1/messages",
            json={"to": RECIPIENT, "from": SENDER, "body": "x"},
            timeout=5,
        )
        assert recovered.status_code == 202


def test_attempts_are_timed_on_arrival(sim: FlowrouteSimulator) -> None:
    before = time.monotonic()
    send(sim)
    send(sim, auth=("bad", "bad"))

    first, second = sim.attempt_times()
    assert before <= first <= second <= time.monotonic()


def test_fail_next_returns_forced_status_then_recovers(sim: FlowrouteSimulator) -> None:
    sim.fail_next(503, 2, code=42, detail="down for maintenance")

    unauthenticated = send(sim, auth=("bad", "bad"))
    first, second, third = send(sim), send(sim), send(sim)

    assert unauthenticated.status_code == 401
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 202)
    error = error_of(first)
    assert (error["code"], error["detail"]) == (42, "down for maintenance")
    assert [m.id for m in sim.messages()] == [third.json()["data"]["id"]]
    assert sim.attempts() == 4


def test_delay_next_accepts_then_answers_late(sim: FlowrouteSimulator) -> None:
    sim.delay_next(5.0)

    with pytest.raises(requests.Timeout):
        send(sim, timeout=0.3)

    assert len(sim.messages()) == 1
    assert send(sim).status_code == 202
    assert len(sim.messages()) == 2


def test_delay_next_without_accept_answers_500_late_and_records_nothing(
    sim: FlowrouteSimulator,
) -> None:
    sim.delay_next(0.3, accept=False)

    started = time.monotonic()
    response = send(sim)

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 500
    error_of(response)
    assert sim.messages() == []


def test_lookup_returns_record(sim: FlowrouteSimulator) -> None:
    message_id = send(sim, body="café ☕").json()["data"]["id"]

    response = requests.get(f"{sim.url}/v2.1/messages/{message_id}", auth=AUTH, timeout=5)

    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["id"], data["type"]) == (message_id, "message")
    attributes = data["attributes"]
    assert (attributes["to"], attributes["from"], attributes["body"]) == (
        RECIPIENT,
        SENDER,
        "café ☕",
    )
    assert (attributes["direction"], attributes["status"]) == ("outbound", "delivered")
    assert attributes["message_encoding"] == 8
    assert attributes["is_mms"] is False
    assert attributes["message_type"] == "longcode"
    assert attributes["delivery_receipts"] == []
    assert attributes["amount_nanodollars"] > 0
    assert attributes["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(attributes["timestamp"])
    assert stamp == sim.messages()[0].timestamp


def test_lookup_of_ascii_body_is_encoding_0(sim: FlowrouteSimulator) -> None:
    message_id = send(sim, body="plain").json()["data"]["id"]

    response = requests.get(f"{sim.url}/v2.1/messages/{message_id}", auth=AUTH, timeout=5)

    assert response.json()["data"]["attributes"]["message_encoding"] == 0


def test_lookup_of_unknown_id_is_404_and_needs_auth(sim: FlowrouteSimulator) -> None:
    unknown = requests.get(f"{sim.url}/v2.1/messages/mdr2-{'0' * 32}", auth=AUTH, timeout=5)
    anonymous = requests.get(f"{sim.url}/v2.1/messages/mdr2-{'0' * 32}", timeout=5)

    assert unknown.status_code == 404
    error_of(unknown)
    assert anonymous.status_code == 401


def test_list_pages_with_next_link(sim: FlowrouteSimulator) -> None:
    sent = [send(sim, body=f"m{i}").json()["data"]["id"] for i in range(5)]
    today = datetime.now(UTC).date()

    listed: list[str] = []
    url: str | None = f"{sim.url}/v2.1/messages"
    params: dict[str, Any] | None = {"start_date": str(today), "end_date": str(today), "limit": 2}
    pages = 0
    while url is not None:
        response = requests.get(url, params=params, auth=AUTH, timeout=5)
        assert response.status_code == 200
        page = response.json()
        listed += [record["id"] for record in page["data"]]
        url, params, pages = page["links"].get("next"), None, pages + 1

    assert listed == sent
    assert pages == 3


def test_list_filters_by_time_range(sim: FlowrouteSimulator) -> None:
    send(sim)
    now = datetime.now(UTC)

    def listed(**params: str) -> int:
        response = requests.get(f"{sim.url}/v2.1/messages", params=params, auth=AUTH, timeout=5)
        assert response.status_code == 200
        return len(response.json()["data"])

    hour_ago = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert listed(start_date=hour_ago) == 1
    assert listed(start_date=str(now.date() + timedelta(days=1))) == 0
    assert listed(start_date=str(now.date() - timedelta(days=2)), end_date=hour_ago) == 0


def test_list_without_start_date_is_400(sim: FlowrouteSimulator) -> None:
    response = requests.get(f"{sim.url}/v2.1/messages", auth=AUTH, timeout=5)

    assert response.status_code == 400
    error_of(response)


def test_unknown_path_is_404_and_wrong_method_is_405(sim: FlowrouteSimulator) -> None:
    assert requests.get(f"{sim.url}/v2/numbers", auth=AUTH, timeout=5).status_code == 404
    assert requests.delete(f"{sim.url}/v2.1/messages", auth=AUTH, timeout=5).status_code == 405
    assert requests.post(f"{sim.url}/v2.1/messages/mdr2-x", auth=AUTH, timeout=5).status_code == 405
    assert sim.attempts() == 0


def test_concurrent_sends_are_all_recorded_once(sim: FlowrouteSimulator) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda i: send(sim, body=f"n{i}"), range(200)))

    assert {r.status_code for r in responses} == {202}
    ids = [r.json()["data"]["id"] for r in responses]
    assert sorted(ids) == sorted(m.id for m in sim.messages())
    assert len(set(ids)) == 200
    assert sim.attempts() == 200
