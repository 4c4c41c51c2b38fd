"""Signing in to the web app through a real OpenID provider, and the refusals around it."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from jobs.webapp.auth import safe_next
from jobs.webapp.tokens import Issuer, TokenRefused
from tests.web import provider
from tests.web.stack import (
    ACCOUNTS,
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT,
    SOURCE,
    WebStack,
    clients,
    csrf_token,
    needs_provider,
    session_contents,
    sign_in,
    web_stack,
)  # fmt: skip

__all__ = ["web_stack"]
pytestmark = needs_provider


def test_a_sender_signs_in_and_lands_where_they_asked_to_go(web_stack: WebStack) -> None:
    session, landed = sign_in(web_stack.url, "alice", "/compose")
    assert landed == f"{web_stack.url}/compose"
    page = session.get(landed, timeout=10)
    assert page.status_code == 200 and 'id="nav-compose"' in page.text
    assert SOURCE in page.text
    events = list(web_stack.db["audit"].find({"action": "sign_in"}))
    assert [e["who"] for e in events] == ["alice"]
    assert events[0]["address"] == "127.0.0.1"


def test_the_session_cookie_is_httponly_lax_and_renewed_on_sign_in(web_stack: WebStack) -> None:
    session = requests.Session()
    # A session from before signing in: the start of a sign-in.
    answer = session.get(f"{web_stack.url}/login", allow_redirects=False, timeout=10)
    set_cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # loopback without TLS: a browser would drop it otherwise
    before = session_contents(session)
    assert "nonce" in before and "user" not in before
    sign_in(web_stack.url, "alice", session=session)
    after = session_contents(session)
    assert after["user"] == "alice"
    # Nothing from the session before sign-in survives it: not its nonce, not its state.
    assert not set(before) & set(after)
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_a_tampered_session_cookie_is_refused(web_stack: WebStack) -> None:
    session, _ = sign_in(web_stack.url, "alice")
    assert session.get(f"{web_stack.url}/compose", timeout=10).status_code == 200
    cookie = session.cookies.get("sms_outbox_session")
    assert cookie is not None
    payload = cookie.split(".")
    forged = base64.urlsafe_b64encode(b'{"at":9999999999,"user":"alice"}').rstrip(b"=").decode()
    for tampered in (
        ".".join([forged, *payload[1:]]),
        cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB"),
    ):
        answer = requests.get(
            f"{web_stack.url}/compose", cookies={"sms_outbox_session": tampered},
            allow_redirects=False, timeout=10,
        )  # fmt: skip
        assert answer.status_code == 302
        assert urlsplit(answer.headers["Location"]).path == "/login"


def test_a_post_without_the_csrf_token_is_refused(web_stack: WebStack) -> None:
    session, _ = sign_in(web_stack.url, "alice")
    form = {"source": SOURCE, "body": "Pool opens at 9", "when": "now", "zone": "UTC"}
    refused = session.post(f"{web_stack.url}/compose/preview", data=form, timeout=10)
    assert refused.status_code == 400
    token = csrf_token(session.get(f"{web_stack.url}/compose", timeout=10).text)
    wrong = session.post(
        f"{web_stack.url}/compose/preview", data={**form, "csrf_token": token[:-3] + "xyz"},
        timeout=10,
    )  # fmt: skip
    assert wrong.status_code == 400
    accepted = session.post(
        f"{web_stack.url}/compose/preview", data={**form, "csrf_token": token}, timeout=10
    )
    assert accepted.status_code == 200 and 'id="confirm"' in accepted.text


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/x"]
)
def test_sign_in_never_redirects_off_the_app(web_stack: WebStack, target: str) -> None:
    _, landed = sign_in(web_stack.url, "alice", target)
    assert landed.startswith(web_stack.url + "/")


def test_next_paths_on_the_app_are_kept_and_others_dropped() -> None:
    assert safe_next("/campaigns/abc?x=1") == "/campaigns/abc?x=1"
    for bad in ("https://evil.example", "//evil.example", "/\\evil", "evil", "", None, "/\t/x"):
        assert safe_next(bad) == "/"


def test_logout_ends_the_session_here_and_at_the_issuer(web_stack: WebStack) -> None:
    session, _ = sign_in(web_stack.url, "alice")
    token = csrf_token(session.get(f"{web_stack.url}/campaigns", timeout=10).text)
    answer = session.post(
        f"{web_stack.url}/logout", data={"csrf_token": token}, allow_redirects=False, timeout=10
    )
    assert answer.status_code == 302
    end = urlsplit(answer.headers["Location"])
    assert f"{end.scheme}://{end.netloc}" == web_stack.idp.issuer and end.path == "/session/end"
    query = parse_qs(end.query)
    assert query["post_logout_redirect_uri"] == [f"{web_stack.url}/signed-out"]
    assert query["id_token_hint"]
    after = session.get(f"{web_stack.url}/compose", allow_redirects=False, timeout=10)
    assert after.status_code == 302 and "/login" in after.headers["Location"]


def test_a_cancelled_sign_in_is_refused_and_audited(web_stack: WebStack) -> None:
    session = requests.Session()
    page = session.get(f"{web_stack.url}/login", timeout=10)
    uid = urlsplit(page.url).path.rsplit("/", 1)[-1]
    answer = session.get(f"{web_stack.idp.issuer}/interaction/{uid}/abort", timeout=10)
    assert answer.status_code == 401 and "Sign-in failed" in answer.text
    assert session.get(f"{web_stack.url}/campaigns", allow_redirects=False).status_code == 302
    (event,) = web_stack.db["audit"].find({"action": "sign_in_failed"})
    assert "access_denied" in event["what"]["reason"]


def _id_token(idp: provider.Provider, client_id: str, secret: str, redirect: str) -> str:
    """A real ID token from `idp` for `client_id`, by the code flow with PKCE."""
    session = requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "client_id": client_id, "response_type": "code", "scope": "openid",
        "redirect_uri": redirect, "nonce": "n-0S6_WzA2Mj", "state": "s",
        "code_challenge": challenge.decode(), "code_challenge_method": "S256",
    }  # fmt: skip
    answer = session.get(f"{idp.issuer}/auth", params=params, allow_redirects=False, timeout=10)
    steps = iter([{"prompt": "login", "login": "alice", "password": "x"}, {"prompt": "consent"}])
    while True:
        if answer.is_redirect:
            location = urljoin(answer.url, answer.headers["Location"])
            if location.startswith(redirect):
                break
            answer = session.get(location, allow_redirects=False, timeout=10)
        else:
            action = urljoin(answer.url, urlsplit(answer.url).path)
            answer = session.post(action, data=next(steps), allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(location).query)["code"][0]
    token = requests.post(
        f"{idp.issuer}/token", auth=(client_id, secret), timeout=10,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
              "code_verifier": verifier},
    )  # fmt: skip
    assert token.status_code == 200, token.text
    return str(token.json()["id_token"])


def test_id_tokens_from_another_issuer_or_for_another_audience_are_refused(
    tmp_path: Path,
) -> None:
    app = "http://127.0.0.1:9"
    key = provider.new_jwk()  # both issuers sign with one key: only `iss` tells them apart
    ours = provider.launch(
        tmp_path, clients=clients(app), accounts=ACCOUNTS, resources=[], jwk=key, name="ours"
    ).wait()
    try:
        theirs = provider.launch(
            tmp_path, clients=clients(app), accounts=ACCOUNTS, resources=[], jwk=key, name="theirs"
        ).wait()
        try:
            check = Issuer(ours.issuer)
            good = _id_token(ours, CLIENT_ID, CLIENT_SECRET, f"{app}/callback")
            assert check.verify(good, CLIENT_ID, nonce="n-0S6_WzA2Mj")["sub"] == "alice"
            with pytest.raises(TokenRefused, match="nonce"):
                check.verify(good, CLIENT_ID, nonce="another-sign-in")
            foreign = _id_token(theirs, CLIENT_ID, CLIENT_SECRET, f"{app}/callback")
            with pytest.raises(TokenRefused, match="iss"):
                check.verify(foreign, CLIENT_ID, nonce="n-0S6_WzA2Mj")
            other = _id_token(ours, OTHER_CLIENT, CLIENT_SECRET + "-other", f"{app}/callback")
            with pytest.raises(TokenRefused, match="aud"):
                check.verify(other, CLIENT_ID, nonce="n-0S6_WzA2Mj")
        finally:
            theirs.close()
    finally:
        ours.close()
