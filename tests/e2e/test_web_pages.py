"""What each kind of user may see and do in the web app: senders, viewers, admins, and users
with no grant (or one revoked while they are signed in)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests

from jobs.keys import KeyRing
from jobs.rules import signing
from tests.web.stack import SOURCE, WebStack, csrf_token, needs_provider, sign_in, web_stack

__all__ = ["web_stack"]
pytestmark = needs_provider
NUMBERS = [f"1206555{n:04d}" for n in range(300, 306)]


def _form(session: requests.Session, url: str, **fields: str) -> dict[str, str]:
    token = csrf_token(session.get(f"{url}/campaigns", timeout=10).text)
    base = {"source": SOURCE, "body": "Pool opens at 9", "when": "now", "zone": "UTC"}
    return {**base, "csrf_token": token, **fields}


def _preview_key(session: requests.Session, url: str) -> dict[str, str]:
    page = session.post(f"{url}/compose/preview", data=_form(session, url), timeout=10)
    assert page.status_code == 200, page.text[-1500:]
    key = re.search(r'name="key" value="([^"]+)"', page.text)
    assert key
    return _form(session, url, key=key.group(1))


def _outbox(web_stack: WebStack) -> list[dict[str, Any]]:
    return list(web_stack.db["outbox"].find({}))


def test_a_viewer_sees_campaigns_but_no_compose(web_stack: WebStack) -> None:
    session, landed = sign_in(web_stack.url, "victor")
    page = session.get(landed, timeout=10)
    assert page.status_code == 200 and 'id="campaigns"' in page.text
    assert "nav-compose" not in page.text and "/compose" not in page.text
    assert session.get(f"{web_stack.url}/compose", timeout=10).status_code == 403
    assert session.get(f"{web_stack.url}/recipients", timeout=10).status_code == 200
    assert session.get(f"{web_stack.url}/audit", timeout=10).status_code == 403
    form = _form(session, web_stack.url, key="k" * 20)
    assert session.post(f"{web_stack.url}/compose/send", data=form, timeout=10).status_code == 403
    assert _outbox(web_stack) == []


def test_a_user_without_a_grant_cannot_send_by_page_or_by_hand(web_stack: WebStack) -> None:
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    session, _ = sign_in(web_stack.url, "nora")
    assert session.get(f"{web_stack.url}/compose", timeout=10).status_code == 403
    assert session.get(f"{web_stack.url}/campaigns", timeout=10).status_code == 403
    token = csrf_token(session.get(f"{web_stack.url}/compose", timeout=10).text)
    form = {"source": SOURCE, "body": "Hi", "when": "now", "zone": "UTC", "csrf_token": token}
    for path in ("/compose/preview", "/compose/send"):
        answer = session.post(f"{web_stack.url}{path}", data={**form, "key": "k" * 20})
        assert answer.status_code == 403, path
    assert _outbox(web_stack) == []


def test_a_revoked_grant_loses_compose_on_the_next_request(web_stack: WebStack) -> None:
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    session, _ = sign_in(web_stack.url, "alice")
    form = _preview_key(session, web_stack.url)
    web_stack.db["authorized"].delete_many({"user": "alice"})
    assert session.get(f"{web_stack.url}/compose", timeout=10).status_code == 403
    answer = session.post(f"{web_stack.url}/compose/send", data=form, timeout=10)
    assert answer.status_code == 403
    assert _outbox(web_stack) == []


def test_a_sender_cannot_send_from_a_number_not_granted_to_them(web_stack: WebStack) -> None:
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    assert web_stack.cli("senders", "grant", "ada", "12065550199").returncode == 0
    session, _ = sign_in(web_stack.url, "alice")
    form = _preview_key(session, web_stack.url)
    answer = session.post(
        f"{web_stack.url}/compose/send", data={**form, "source": "12065550199"}, timeout=10
    )
    assert answer.status_code == 400 and "choose one of your numbers" in answer.text
    assert _outbox(web_stack) == []


def test_a_confirmed_broadcast_is_signed_and_its_page_opens(web_stack: WebStack) -> None:
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    session, _ = sign_in(web_stack.url, "alice")
    form = _preview_key(session, web_stack.url)
    sent = session.post(f"{web_stack.url}/compose/send", data=form, timeout=10)
    again = session.post(f"{web_stack.url}/compose/send", data=form, timeout=10)
    assert sent.status_code == 200 and 'id="campaign-id"' in sent.text
    assert again.url == sent.url  # a second click on Confirm is the same broadcast
    (doc,) = _outbox(web_stack)
    assert sent.url == f"{web_stack.url}/campaigns/{doc['_id']}"
    assert doc["user"] == "alice" and doc["from"] == SOURCE and doc["audience"] == "verified"
    key = KeyRing(Path(web_stack.cli.env["SMS_OUTBOX_SECURITY__KEYS_DIR"])).user_key("alice")
    assert signing.check(key, doc, "alice") is None  # signed with alice's own key
    (event,) = web_stack.db["audit"].find({"action": "send"})
    assert event["who"] == "alice" and event["what"]["id"] == str(doc["_id"])


def test_broadcasts_per_hour_are_limited_per_user(web_stack: WebStack) -> None:
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    session, _ = sign_in(web_stack.url, "alice")
    for _ in range(5):  # the default limit
        form = _preview_key(session, web_stack.url)
        assert session.post(f"{web_stack.url}/compose/send", data=form).status_code == 200
    form = _preview_key(session, web_stack.url)
    answer = session.post(f"{web_stack.url}/compose/send", data=form, timeout=10)
    assert answer.status_code == 429
    assert len(_outbox(web_stack)) == 5


def test_only_its_sender_or_an_admin_may_cancel_a_campaign(web_stack: WebStack) -> None:
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    alice, _ = sign_in(web_stack.url, "alice")
    campaign = alice.post(
        f"{web_stack.url}/compose/send", data=_preview_key(alice, web_stack.url), timeout=10
    ).url
    victor, _ = sign_in(web_stack.url, "victor")
    page = victor.get(campaign, timeout=10)
    assert 'id="sender">alice<' in page.text and 'id="cancel"' not in page.text
    refused = victor.post(f"{campaign}/cancel", data={"csrf_token": csrf_token(page.text)})
    assert refused.status_code == 403
    ada, _ = sign_in(web_stack.url, "ada")
    page = ada.get(campaign, timeout=10)
    assert 'id="cancel"' in page.text
    done = ada.post(f"{campaign}/cancel", data={"csrf_token": csrf_token(page.text)})
    assert done.status_code == 200
    (doc,) = _outbox(web_stack)
    assert doc["state"] == "cancelled" and doc["cancelled"]["by"] == "ada"
    audit = ada.get(f"{web_stack.url}/audit", timeout=10).text
    for action in ("sign_in", "send", "cancel"):
        assert f'class="action">{action}<' in audit


def test_recipients_are_counted_masked_and_searchable(web_stack: WebStack) -> None:
    assert web_stack.cli("recipients", "add", *NUMBERS[:4], "--verified").returncode == 0
    assert web_stack.cli("recipients", "add", NUMBERS[4]).returncode == 0
    assert web_stack.cli("recipients", "opt-out", NUMBERS[5]).returncode == 0
    session, _ = sign_in(web_stack.url, "victor")
    page = session.get(f"{web_stack.url}/recipients", timeout=10).text
    assert 'id="count-verified">4<' in page and 'id="count-opted-out">1<' in page
    assert 'id="count-unverified">1<' in page
    assert not any(n in page for n in NUMBERS) and "•••••••0300" in page
    found = session.get(
        f"{web_stack.url}/recipients", params={"number": "(206) 555-0305"}, timeout=10
    ).text
    assert 'id="person"' in found and "12065550305" in found and "requested" in found


def test_a_broadcast_can_be_sent_at_a_time_in_the_senders_zone(web_stack: WebStack) -> None:
    assert web_stack.cli("recipients", "add", *NUMBERS, "--verified").returncode == 0
    session, _ = sign_in(web_stack.url, "alice")
    later = {"when": "later", "at": "2030-01-02T09:30", "zone": "America/New_York"}
    page = session.post(
        f"{web_stack.url}/compose/preview", data=_form(session, web_stack.url, **later)
    )
    assert page.status_code == 200 and "2030-01-02 14:30 UTC" in page.text
    key = re.search(r'name="key" value="([^"]+)"', page.text)
    assert key
    form = _form(session, web_stack.url, **later, key=key.group(1))
    assert session.post(f"{web_stack.url}/compose/send", data=form).status_code == 200
    (doc,) = _outbox(web_stack)
    assert doc["send_at"].isoformat() == "2030-01-02T14:30:00+00:00"
    past = _form(session, web_stack.url, when="later", at="2001-01-01T00:00", zone="UTC")
    refused = session.post(f"{web_stack.url}/compose/preview", data=past)
    assert refused.status_code == 400 and "that time has passed" in refused.text
