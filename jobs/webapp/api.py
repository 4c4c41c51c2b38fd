"""The JSON API for programs: bearer access tokens from the same issuer (client credentials),
checked by its keys for the configured API audience and mapped to a user like a sign-in."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request

from jobs.errors import InputError
from jobs.model import STATUS_FIELDS, Reason
from jobs.mongo import reports, status
from jobs.webapp import present
from jobs.webapp.context import Person, client_address, person_for, web
from jobs.webapp.sending import Limited, send
from jobs.webapp.tokens import TokenRefused

bp = Blueprint("api", __name__, url_prefix="/api/v1")
F = TypeVar("F", bound=Callable[..., Any])
OPENAPI = Path(__file__).with_name("openapi.json")
STATUS_FOR = {
    Reason.NOT_AUTHORIZED.value: 403, Reason.SOURCE_NOT_GRANTED.value: 403,
    Reason.DUPLICATE_KEY.value: 409,
}  # fmt: skip


def problem(code: int, reason: str, detail: str) -> tuple[Response, int]:
    """A JSON error: `{"error": {"code": <reason code>, "detail": ...}}`."""
    response = jsonify(error={"code": reason, "detail": detail})
    if code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sms-outbox"'
    return response, code


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def bearer(view: F) -> F:
    """Admit requests with a valid access token; its user is `g.caller`."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        w = web()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return problem(401, "no_token", "send an access token: Authorization: Bearer ...")
        if not w.config.api_audience:
            return problem(404, "no_api", "this installation has no API (web.api_audience)")
        try:
            claims = w.issuer.verify(token.strip(), w.config.api_audience)
        except TokenRefused as exc:
            return problem(401, "invalid_token", str(exc))
        user = claims.get(w.config.user_claim)
        if not isinstance(user, str) or not user:
            return problem(401, "invalid_token", f"the token has no {w.config.user_claim!r}")
        g.caller = person_for(user)
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def _caller() -> Person:
    caller: Person = g.caller
    return caller


def _body() -> dict[str, Any]:
    found = request.get_json(silent=True)
    if not isinstance(found, dict):
        raise InputError("the request body must be a JSON object")
    return found


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"send_at {str(value)[:40]!r} is not an ISO-8601 time") from None
    if at.tzinfo is None:
        raise InputError("send_at must carry a UTC offset, such as Z or +00:00")
    return at


def _send(broadcast: bool) -> Any:
    caller = _caller()
    try:
        body = _body()
        result = send(
            caller, body=body.get("body"), to=None if broadcast else body.get("to"),  # type: ignore[arg-type]
            source=body.get("from"), send_at=_when(body.get("send_at")), key=body.get("key"),
            address=client_address(),
        )  # fmt: skip
    except Limited as exc:
        return problem(429, "rate_limited", str(exc))
    except InputError as exc:
        return problem(STATUS_FOR.get(exc.reason, 400), exc.reason, str(exc))
    answer = jsonify(id=str(result.id), created=result.created)
    return answer, 201 if result.created else 200


@bp.post("/messages")
@bearer
def post_message() -> Any:
    if _caller().may_send is False:
        return problem(403, Reason.NOT_AUTHORIZED.value, "this user has no grant to send")
    return _send(broadcast=False)


@bp.post("/broadcasts")
@bearer
def post_broadcast() -> Any:
    if _caller().may_send is False:
        return problem(403, Reason.NOT_AUTHORIZED.value, "this user has no grant to send")
    return _send(broadcast=True)


@bp.get("/messages/<mid>")
@bearer
def get_message(mid: str) -> Any:
    caller = _caller()
    doc = status.get(web().db, mid)
    if doc is None:  # inserted, not admitted by a daemon yet: no status copy exists
        new = web().store.find(status.parse_id(mid))
        if new is not None:
            doc = {k: new[k] for k in ("_id", *STATUS_FIELDS) if k in new}
            doc["state"] = new.get("state") or "new"
    if doc is None or not (caller.admin or caller.viewer or doc.get("user") == caller.user):
        return problem(404, "not_found", f"no message {mid[:80]}")
    doc.pop("signature", None)
    return jsonify(_json(doc))


@bp.get("/campaigns/<cid>")
@bearer
def get_campaign(cid: str) -> Any:
    w = web()
    caller = _caller()
    counts = reports.campaign(w.db, cid, w.clock.now())
    owner = (counts.request or {}).get("user")
    if (counts.total == 0 and counts.request is None) or not (
        caller.admin or caller.viewer or owner == caller.user
    ):
        return problem(404, "not_found", f"no campaign {cid[:80]}")
    view = present.summary(counts, w.clock.now(), w.config.rate_per_second, w.config.quiet_hours)
    return jsonify(_json(view))


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(OPENAPI.read_text(encoding="utf-8"), mimetype="application/json")
