"""Signing in and out with OpenID Connect (code flow with PKCE, state and nonce), and the guards
that pages put in front of themselves."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import requests
import structlog
from authlib.integrations.base_client.errors import OAuthError
from flask import Blueprint, abort, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from jobs.webapp.context import client_address, current_person, web
from jobs.webapp.tokens import TokenRefused

bp = Blueprint("auth", __name__)
log = structlog.get_logger("sms_outbox.web")
F = TypeVar("F", bound=Callable[..., Any])


def safe_next(target: str | None) -> str:
    """A path on this app to go to after sign-in; anything else (another host, a scheme,
    `//host`, a backslash) becomes the start page, so sign-in cannot redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def require(right: str) -> Callable[[F], F]:
    """Guard a page: `look`, `send` or `admin`. Signed-out visitors of a GET page are sent to
    sign in; anyone else without the right gets 403."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            person = current_person()
            if person is None:
                if request.method == "GET":
                    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
                abort(401)
            allowed = {"look": person.may_look, "send": person.may_send, "admin": person.admin}
            if not allowed[right]:
                abort(403)
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return wrap


@bp.get("/login")
def login() -> Any:
    """Start the code flow; Authlib keeps state, nonce and the PKCE verifier in the session."""
    session["next"] = safe_next(request.args.get("next"))
    nonce = secrets.token_urlsafe(24)
    session["nonce"] = nonce
    return web().oauth.authorize_redirect(web().config.callback_url, nonce=nonce)


def _failed(why: str, who: str | None = None) -> tuple[str, int]:
    w = web()
    w.audit.record("sign_in_failed", who, client_address(), w.clock.now(), reason=why)
    log.info("web.sign_in_failed", reason=why, address=client_address())
    session.clear()
    page = render_template("message.html", title="Sign-in failed", text=why, retry=True)
    return page, 401


def _with_userinfo(claims: dict[str, Any], token: dict[str, Any]) -> dict[str, Any]:
    """The ID token's claims, completed from the userinfo endpoint when the user claim or a
    display name is not in the token (providers put `email` and `name` there). Userinfo must
    be about the same `sub`, or it is ignored."""
    w = web()
    if w.config.user_claim in claims and ("name" in claims or "email" in claims):
        return claims
    if not w.issuer.metadata.get("userinfo_endpoint"):
        return claims
    info = dict(w.oauth.userinfo(token=token))
    if info.get("sub") != claims.get("sub"):
        raise TokenRefused("the userinfo endpoint answered about another subject")
    return {**info, **claims}


@bp.get("/callback")
def callback() -> Any:
    """Finish the code flow: check state, exchange the code, check the ID token's signature,
    issuer, audience, expiry and nonce, then start a fresh session (never the old one)."""
    w = web()
    if request.args.get("error"):
        return _failed(f"the identity provider answered {request.args['error'][:80]}")
    nonce = session.get("nonce")
    try:
        token = w.oauth.authorize_access_token()
        claims = w.issuer.verify(str(token.get("id_token")), w.config.client_id, nonce=nonce)
        claims = _with_userinfo(claims, token)
    except (OAuthError, TokenRefused, requests.RequestException) as exc:
        return _failed(f"the sign-in could not be completed ({type(exc).__name__}: {exc})")
    user = claims.get(w.config.user_claim)
    if not isinstance(user, str) or not user:
        return _failed(f"the ID token has no {w.config.user_claim!r} claim")
    target = safe_next(session.get("next"))
    session.clear()
    session.permanent = True
    session.update(
        user=user,
        name=str(claims.get("name") or claims.get("email") or user)[:80],
        zone=claims.get("zoneinfo") if isinstance(claims.get("zoneinfo"), str) else None,
        at=w.clock.now().timestamp(),
        id_token=token["id_token"],
    )
    w.audit.record("sign_in", user, client_address(), w.clock.now())
    log.info("web.signed_in", user=user, address=client_address())
    return redirect(target)


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    """End the session here, then at the issuer when it offers RP-initiated logout."""
    w = web()
    person = current_person()
    id_token = session.get("id_token")
    session.clear()
    if person is not None:
        w.audit.record("sign_out", person.user, client_address(), w.clock.now())
    back = w.config.public_url.rstrip("/") + url_for("auth.signed_out")
    end = w.issuer.metadata.get("end_session_endpoint")
    if isinstance(end, str) and end:
        query = {"post_logout_redirect_uri": back, "client_id": w.config.client_id}
        if isinstance(id_token, str):
            query["id_token_hint"] = id_token
        return redirect(f"{end}?{urlencode(query)}")
    return redirect(back)


@bp.get("/signed-out")
def signed_out() -> str:
    return render_template(
        "message.html", title="Signed out", text="You are signed out.", retry=True
    )
