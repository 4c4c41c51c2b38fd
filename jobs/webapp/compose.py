"""Compose a broadcast: the form, its live segment counter, the preview, and the sending."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for

from jobs.errors import InputError
from jobs.model import BROADCAST_AUDIENCE
from jobs.mongo import people
from jobs.rules import intake, progress, segments
from jobs.webapp.auth import require
from jobs.webapp.context import Person, client_address, current_person, web
from jobs.webapp.sending import Limited, broadcasts_left, send

bp = Blueprint("compose", __name__)


def _person() -> Person:
    person = current_person()
    assert person is not None
    return person


@bp.get("/compose")
@require("send")
def form() -> str:
    person = _person()
    return render_template(
        "compose.html", person=person, left=broadcasts_left(person, web().clock.now()),
        form=request.args, problem=None,
    )  # fmt: skip


@bp.get("/compose/measure")
@require("send")
def measure() -> Any:
    """The counter's numbers, from the same code that bills and vets messages."""
    body = request.args.get("body", "")[:2000]
    text = segments.normalize_text(body)
    size = segments.measure(text)
    return jsonify(
        encoding="GSM-7" if size.encoding == segments.ASCII else "UCS-2",
        segments=size.segments if body else 0,
        characters=size.characters,
        fixed=text != body,
        text=text,
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"time zone {name[:40]!r} is not known") from None


def _send_at(form: Any, now: datetime) -> datetime | None:
    """`None` for now, else the local time in the chosen zone, in UTC; never in the past."""
    if form.get("when") != "later":
        return None
    try:
        local = datetime.fromisoformat(form.get("at", ""))
    except ValueError:
        raise InputError("choose a date and time to send at") from None
    at = local.replace(tzinfo=_zone(form.get("zone", "UTC"))).astimezone(UTC)
    if at < now - timedelta(minutes=1):
        raise InputError("that time has passed")
    return at


def _checked(person: Person, form: Any) -> dict[str, Any]:
    """The compose form as a broadcast the daemon would admit, or InputError saying why not."""
    now = web().clock.now()
    source = form.get("source") or None
    if source not in person.sources:
        raise InputError("choose one of your numbers to send from")
    send_at = _send_at(form, now)
    doc = {"user": person.user, "audience": BROADCAST_AUDIENCE, "body": form.get("body", "")}
    admission = intake.admit(doc, now, web().config.max_segments)
    if admission.problem is not None:
        raise InputError(admission.problem.detail, admission.problem.code)
    return {"source": source, "send_at": send_at, "body": form.get("body", ""),
            "fields": admission.fields}  # fmt: skip


def _estimate(checked: dict[str, Any]) -> dict[str, Any]:
    """How many people, segments, how long at the limit and within quiet hours, and the cost."""
    w = web()
    audience = people.audience(w.db)
    start = checked["send_at"] or w.clock.now()
    rate = w.config.rate_per_second
    seconds = len(audience) / rate if rate else 0.0
    finish = progress.eta(start, [(start, n) for n in audience], rate, w.config.quiet_hours)
    per = int(checked["fields"]["segments"])
    return {
        "people": len(audience),
        "segments": per,
        "encoding": "GSM-7" if checked["fields"]["encoding"] == segments.ASCII else "UCS-2",
        "text": segments.normalize_text(checked["body"]),
        "seconds": seconds,
        "finish": finish,
        "cost": len(audience) * per * w.config.price_per_segment,
        "currency": w.config.currency,
    }


@bp.post("/compose/preview")
@require("send")
def preview() -> Any:
    person = _person()
    try:
        checked = _checked(person, request.form)
    except InputError as exc:
        left = broadcasts_left(person, web().clock.now())
        page = render_template(
            "compose.html", person=person, left=left, form=request.form, problem=str(exc)
        )
        return page, 400
    return render_template(
        "preview.html", form=request.form, checked=checked, estimate=_estimate(checked),
        key=secrets.token_urlsafe(18),
    )  # fmt: skip


@bp.post("/compose/send")
@require("send")
def confirm() -> Any:
    """Insert the broadcast signed with the person's key, then show its campaign."""
    person = _person()
    key = request.form.get("key", "")
    if not 16 <= len(key) <= 64:
        abort(400)
    try:
        checked = _checked(person, request.form)
        result = send(
            person, body=checked["body"], source=checked["source"],
            send_at=checked["send_at"], key=f"web:{key}", address=client_address(),
        )  # fmt: skip
    except Limited as exc:
        return render_template("message.html", title="Limit reached", text=str(exc)), 429
    except InputError as exc:
        left = broadcasts_left(person, web().clock.now())
        page = render_template(
            "compose.html", person=person, left=left, form=request.form, problem=str(exc)
        )
        return page, 400
    return redirect(url_for("pages.campaign", cid=str(result.id)))
