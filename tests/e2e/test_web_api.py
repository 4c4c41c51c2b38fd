"""The JSON API: bearer access tokens from the same provider (client credentials), checked for
the API's audience and mapped to a user with grants; JSON errors with reason codes."""

from __future__ import annotations

from typing import Any

import requests

from tests.web.stack import (
    API_AUDIENCE,
    OTHER_AUDIENCE,
    READ_TOKEN,
    ROBOT,
    ROBOT_SECRET,
    SOURCE,
    WebStack,
    needs_provider,
    web_stack,
)  # fmt: skip

__all__ = ["web_stack"]
pytestmark = needs_provider
NUMBERS = ["12065550500", "12065550501", "12065550502"]


def _call(
    stack: WebStack, method: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.request(method, stack.url + path, headers=headers, timeout=10, **kwargs)
    assert answer.headers["Content-Type"].startswith("application/json"), answer.text[:500]
    return answer.status_code, answer.json()


def test_calls_without_a_token_or_with_a_token_for_another_audience_are_refused(
    web_stack: WebStack,
) -> None:
    message = {"to": NUMBERS[0], "body": "Hi"}
    status, body = _call(web_stack, "POST", "/api/v1/messages", json=message)
    assert (status, body["error"]["code"]) == (401, "no_token")
    elsewhere = web_stack.idp.token(ROBOT, ROBOT_SECRET, OTHER_AUDIENCE)
    status, body = _call(web_stack, "POST", "/api/v1/messages", elsewhere, json=message)
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    assert "aud" in body["error"]["detail"]
    status, body = _call(web_stack, "GET", "/api/v1/campaigns/x", "not.a.token")
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    assert list(web_stack.db["outbox"].find({})) == []


def test_a_caller_without_a_grant_is_refused_with_a_reason_code(web_stack: WebStack) -> None:
    token = web_stack.idp.token(ROBOT, ROBOT_SECRET, API_AUDIENCE)
    status, body = _call(
        web_stack, "POST", "/api/v1/broadcasts", token, json={"body": "Pool opens at 9"}
    )
    assert (status, body["error"]["code"]) == (403, "not_authorized")
    assert list(web_stack.db["outbox"].find({})) == []


def test_a_granted_caller_queues_messages_and_broadcasts_and_reads_them(
    web_stack: WebStack,
) -> None:
    assert web_stack.cli("senders", "grant", ROBOT, SOURCE).returncode == 0
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    token = web_stack.idp.token(ROBOT, ROBOT_SECRET, API_AUDIENCE)
    one = {"to": NUMBERS[0], "body": "Your lane is booked", "key": "booking-17"}
    status, body = _call(web_stack, "POST", "/api/v1/messages", token, json=one)
    assert status == 201 and body["created"] is True
    again = _call(web_stack, "POST", "/api/v1/messages", token, json=one)
    assert again == (200, {"id": body["id"], "created": False})
    status, found = _call(web_stack, "GET", f"/api/v1/messages/{body['id']}", token)
    assert status == 200 and found["to"] == NUMBERS[0] and found["user"] == ROBOT
    assert "signature" not in found

    status, refused = _call(
        web_stack, "POST", "/api/v1/messages", token, json={"to": "12065550999", "body": "Hi"}
    )
    assert (status, refused["error"]["code"]) == (400, "not_verified")
    status, refused = _call(
        web_stack, "POST", "/api/v1/messages", token,
        json={"to": NUMBERS[1], "body": "Hi", "from": "12065550111"},
    )  # fmt: skip
    assert (status, refused["error"]["code"]) == (403, "source_not_granted")

    status, body = _call(web_stack, "POST", "/api/v1/broadcasts", token, json={"body": "Hello"})
    assert status == 201
    status, campaign = _call(web_stack, "GET", f"/api/v1/campaigns/{body['id']}", token)
    assert status == 200 and campaign["user"] == ROBOT and campaign["campaign"] == body["id"]
    status, missing = _call(web_stack, "GET", "/api/v1/campaigns/nope", token)
    assert (status, missing["error"]["code"]) == (404, "not_found")
    sends = [e["action"] for e in web_stack.db["audit"].find({"who": ROBOT})]
    assert sends == ["send_message", "send"]


def test_the_openapi_description_is_served(web_stack: WebStack) -> None:
    status, spec = _call(web_stack, "GET", "/api/v1/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    assert {"/api/v1/messages", "/api/v1/broadcasts"} <= set(spec["paths"])


def test_machines_read_campaigns_with_the_read_token_in_a_header(web_stack: WebStack) -> None:
    url = f"{web_stack.url}/campaigns.json"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, params={"token": READ_TOKEN}, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert requests.get(url, headers=wrong, timeout=10).status_code == 401
    answer = requests.get(url, headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["rows"] == []
    refused = requests.post(url, headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=10)
    assert refused.status_code in (400, 405)
