"""The pages for looking: campaigns (live), one campaign (with cancel), recipients, the audit."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for

from jobs.dispatch import optouts
from jobs.errors import InputError
from jobs.mongo import people, reports
from jobs.mongo.inbound import InboundLog
from jobs.mongo.status import parse_id
from jobs.rules import interventions, phone
from jobs.webapp import present
from jobs.webapp.auth import require
from jobs.webapp.context import client_address, current_person, web

bp = Blueprint("pages", __name__)
RECENT = 20
MAX_RECIPIENTS = 500


def _views() -> list[dict[str, Any]]:
    w = web()
    now = w.clock.now()
    views = []
    for counts in reports.recent_campaigns(w.db, RECENT):
        # As on the dashboard: the waiting messages at the account's rate, without quiet hours.
        waiting = sum(counts.states.get(s, 0) for s in reports.WAITING)
        counts.waiting_due = [(now, "")] * waiting
        views.append(present.summary(counts, now, w.config.rate_per_second, None))
    return views


@bp.get("/")
def home() -> Any:
    return redirect(url_for("pages.campaigns"))


@bp.get("/campaigns")
@require("look")
def campaigns() -> str:
    w = web()
    states: dict[str, int] = {}
    failures: dict[str, int] = {}
    for (state, reason), n in reports.states_and_reasons(w.db).items():
        states[state] = states.get(state, 0) + n
        if reason and state in ("failed", "rejected", "undelivered", "expired", "unknown"):
            failures[f"{state}: {reason}"] = failures.get(f"{state}: {reason}", 0) + n
    senders = optouts.on_day(InboundLog(w.db), w.clock.now())
    return render_template(
        "campaigns.html",
        rows=[present.row(v) for v in _views()],
        columns=present.COLUMNS,
        states=sorted(states.items()),
        failures=sorted(failures.items(), key=lambda item: -item[1]),
        senders=senders,
        mask=present.mask,
        percent=present.percent,
    )


def _machine_token_ok() -> bool:
    token = web().config.read_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@bp.get("/campaigns.json")
def campaigns_json() -> Any:
    """The campaigns table as data, for the page's polling and for machines holding the
    read-only token (in the Authorization header, never in the URL)."""
    person = current_person()
    if not _machine_token_ok() and (person is None or not person.may_look):
        abort(401)
    rows = [present.row(v) for v in _views()]
    return jsonify(as_of=web().clock.now().isoformat(), rows=rows)


def _campaign_view(cid: str) -> dict[str, Any]:
    w = web()
    counts = reports.campaign(w.db, cid, w.clock.now())
    if counts.total == 0 and counts.request is None:
        abort(404)
    return present.summary(counts, w.clock.now(), w.config.rate_per_second, w.config.quiet_hours)


def _fields(view: dict[str, Any]) -> dict[str, str]:
    prog = view["progress"]
    fields = {f"bucket_{k}": str(v) for k, v in prog.items() if k not in ("done", "fraction")}
    fields.update(
        progress=present.percent(prog["fraction"]),
        total=str(view["total"]),
        delivery_rate=present.percent(view["delivery_rate"]),
        opt_outs=str(view["opt_outs"]),
        eta="done" if prog["done"] else present.when(view["eta"]),
        request_state=str(view["request_state"] or "-"),
        created=present.when(view["created_at"]),
    )
    return fields


@bp.get("/campaigns/<cid>")
@require("look")
def campaign(cid: str) -> str:
    view = _campaign_view(cid)
    person = current_person()
    assert person is not None
    may_cancel = (person.admin or person.user == view["user"]) and not view["progress"]["done"]
    recipients = reports.recipients(web().db, cid)[:MAX_RECIPIENTS]
    return render_template(
        "campaign.html", view=view, fields=_fields(view), may_cancel=may_cancel,
        tables=_tables(view, recipients), when=present.when,
    )  # fmt: skip


def _tables(view: dict[str, Any], recipients: list[dict[str, Any]]) -> dict[str, list[list[str]]]:
    """The campaign page's tables as rows of text, for the page and its polling alike."""
    people = [
        [present.mask(r.get("to")), str(r.get("state")), str((r.get("error") or {}).get("code")
         or ""), present.when(r.get("sent_at"))]
        for r in recipients
    ]  # fmt: skip
    return {
        "states": [[state, str(n)] for state, n in view["states"].items()],
        "reasons": [[code, str(n)] for code, n in view["reasons"].items()],
        "recipients": people,
    }


@bp.get("/campaigns/<cid>.json")
@require("look")
def campaign_json(cid: str) -> Any:
    view = _campaign_view(cid)
    recipients = reports.recipients(web().db, cid)[:MAX_RECIPIENTS]
    return jsonify(fields=_fields(view), tables=_tables(view, recipients))


@bp.post("/campaigns/<cid>/cancel")
@require("look")
def cancel(cid: str) -> Any:
    """Its sender or an admin stops what has not been sent yet."""
    w = web()
    person = current_person()
    assert person is not None
    doc = w.store.find(parse_id(cid))
    if doc is None or "audience" not in doc:
        abort(404)
    if not (person.admin or doc.get("user") == person.user):
        abort(403)
    done = w.store.cancel(doc, person.user) if interventions.may_cancel(doc) else None
    children = w.store.cancel_campaign(str(doc["_id"]), person.user)
    w.audit.record(
        "cancel", person.user, client_address(), w.clock.now(),
        campaign=cid, request_cancelled=done is not None, messages=children,
    )  # fmt: skip
    return redirect(url_for("pages.campaign", cid=cid))


@bp.get("/recipients")
@require("look")
def recipients() -> str:
    w = web()
    asked = request.args.get("number", "").strip()
    found, problem = None, None
    if asked:
        try:
            found = people.history(w.db, phone.normalize(asked))
        except (InputError, ValueError) as exc:
            problem = str(exc)
    return render_template(
        "recipients.html", counts=people.counts(w.db), rows=people.page(w.db), asked=asked,
        found=found, problem=problem, mask=present.mask, when=present.when,
    )  # fmt: skip


@bp.get("/audit")
@require("admin")
def audit() -> str:
    return render_template("audit.html", events=web().audit.recent(), when=present.when)
