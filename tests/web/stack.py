"""The web app as a test meets it: a real OpenID provider, `sms-outbox web` on a free port, and
sign-in through the provider's own login and consent pages with plain HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from flask import Flask
from pymongo.database import Database

from tests.conftest import Cli
from tests.e2e.observe import free_port, wait_for
from tests.web import provider
from tests.web.provider import Provider

CLIENT_ID = "sms-outbox-web"
CLIENT_SECRET = "web-client-secret-0c41f7d2b9e8a6"
OTHER_CLIENT = "another-app"
SESSION_SECRET = "session-secret-7d0e3b51c8a94f26ab1e"
API_AUDIENCE = "https://sms-outbox.test/api"
OTHER_AUDIENCE = "https://elsewhere.test/api"
ROBOT, ROBOT_SECRET = "reporting-robot", "robot-secret-52c9e0a7f4b1d3"
SOURCE = "12065550100"
READ_TOKEN = "read-only-token-for-machines-83f1"
ACCOUNTS = {
    "alice": {"email": "alice@example.org", "name": "Alice Sender"},
    "victor": {"email": "victor@example.org", "name": "Victor Viewer"},
    "nora": {"email": "nora@example.org", "name": "Nora Nogrant"},
    "ada": {"email": "ada@example.org", "name": "Ada Admin"},
}
needs_provider = pytest.mark.skipif(
    not provider.INSTALLED, reason="needs node and tests/servers/install-oidc-provider.sh"
)


def clients(app_url: str) -> list[dict[str, Any]]:
    web = {
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{app_url}/callback"],
        "post_logout_redirect_uris": [f"{app_url}/signed-out"],
        "grant_types": ["authorization_code"], "response_types": ["code"],
    }  # fmt: skip
    other = {**web, "client_id": OTHER_CLIENT, "client_secret": CLIENT_SECRET + "-other"}
    robot = {
        "client_id": ROBOT, "client_secret": ROBOT_SECRET,
        "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
    }  # fmt: skip
    return [web, other, robot]


@dataclass
class WebStack:
    url: str
    idp: Provider
    cli: Cli
    db: Database[dict[str, Any]]


@pytest.fixture
def web_stack(cli: Cli, db: Database[dict[str, Any]], tmp_path: Path) -> Iterator[WebStack]:
    """The provider and `sms-outbox web` (alice may send, victor may look, ada is admin, nora
    has neither); both stopped on every path."""
    app_url = f"http://127.0.0.1:{free_port()}"
    idp = provider.launch(
        tmp_path, clients=clients(app_url), accounts=ACCOUNTS,
        resources=[API_AUDIENCE, OTHER_AUDIENCE], jwk=provider.new_jwk(),
    )  # fmt: skip
    try:
        # Node starts the provider meanwhile.
        assert cli("senders", "grant", "alice", SOURCE).returncode == 0
        idp.wait()
        cli.env.update(
            SMS_OUTBOX_WEB__PUBLIC_URL=app_url,
            SMS_OUTBOX_WEB__ISSUER=idp.issuer,
            SMS_OUTBOX_WEB__CLIENT_ID=CLIENT_ID,
            SMS_OUTBOX_WEB__CLIENT_SECRET=CLIENT_SECRET,
            SMS_OUTBOX_WEB__SESSION_SECRET=SESSION_SECRET,
            SMS_OUTBOX_WEB__VIEWERS='["victor"]',
            SMS_OUTBOX_WEB__ADMINS='["ada"]',
            SMS_OUTBOX_WEB__API_AUDIENCE=API_AUDIENCE,
            SMS_OUTBOX_WEB__PRICE_PER_SEGMENT="0.0079",
            SMS_OUTBOX_WEB__READ_TOKEN=READ_TOKEN,
        )
        app = cli.popen("web", "--listen", app_url.removeprefix("http://"))
        wait_for(lambda: _answers(app_url, app), "the web app to answer", timeout=60)
        yield WebStack(app_url, idp, cli, db)
    finally:
        cli.stop_all()
        idp.close()


def _answers(url: str, app: Any) -> bool:
    if app.poll() is not None:
        raise AssertionError(f"sms-outbox web exited: {app.communicate()[1][-2000:]}")
    try:
        return requests.get(url + "/signed-out", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _form_action(html: str, base: str) -> str:
    found = re.search(r'<form[^>]*action="([^"]+)"', html)
    assert found, html[:2000]
    return urljoin(base, str(found.group(1)).replace("&amp;", "&"))


def sign_in(
    url: str, login: str, next_path: str = "/campaigns", session: requests.Session | None = None
) -> tuple[requests.Session, str]:
    """Sign in through the provider's login and consent pages (in `session`, or a new one);
    the session and the final URL."""
    session = session or requests.Session()
    page = session.get(f"{url}/login", params={"next": next_path}, timeout=10)
    for _ in range(3):
        if 'name="prompt" value="login"' in page.text:
            data = {"prompt": "login", "login": login, "password": "any"}
        elif 'name="prompt" value="consent"' in page.text:
            data = {"prompt": "consent"}
        else:
            break
        page = session.post(_form_action(page.text, page.url), data=data, timeout=10)
    return session, str(page.url)


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def session_contents(session: requests.Session) -> dict[str, Any]:
    """What the app's signed session cookie holds, read with the app's own secret."""
    app = Flask(__name__)
    app.secret_key = SESSION_SECRET
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    found: dict[str, Any] = serializer.loads(session.cookies.get("sms_outbox_session"))
    return found
