"""The dashboard's page: campaigns, failures by reason, opt-out rates and messages by state,
rendered as one HTML document."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Any

from jobs.dispatch import optouts
from jobs.health import AccountStatus
from jobs.mongo import reports
from jobs.mongo.connection import Db
from jobs.mongo.inbound import InboundLog
from jobs.rules.optout_rate import WARN_RATE, Rate
from scheduler.surfaces import watch

OVER = ' class="over"'
FIELDS = ("sent", "delivered", "failed", "rejected", "waiting")

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2733;background:#f6f8fa}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
.meta{color:#5b6775}.pill{padding:.1rem .5rem;border-radius:1rem;color:#fff}
.active{background:#2e7d32}.held{background:#c62828}.paused{background:#ef6c00}
.wide{overflow-x:auto}.grid{display:flex;gap:1.5rem;flex-wrap:wrap;align-items:flex-start}
.grid section{flex:1;min-width:18rem}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;width:100%;font-size:13px}
th,td{padding:.35rem .5rem;border-bottom:1px solid #e5e9ef;text-align:right;white-space:nowrap}
th{background:#eef2f6;font-weight:600;white-space:normal}td.l,th.l{text-align:left}
code{font-size:12px}td.id{white-space:normal;word-break:break-all;min-width:6rem;max-width:8rem}
tr.over td{color:#c62828;font-weight:600}
.bar{width:70px;height:.6rem;background:#e5e9ef;border-radius:.3rem;overflow:hidden;
display:inline-block;vertical-align:middle;margin-right:.4rem}
.bar span{display:block;height:100%;background:#1976d2}
.sent{color:#00838f}.delivered{color:#2e7d32}.failed{color:#c62828}.rejected{color:#8e24aa}
.waiting{color:#b26a00}.reasons{font-size:.9em;color:#5b6775;text-align:left;white-space:normal;min-width:9rem}
"""


def quote(value: Any) -> str:
    """A value as HTML text, quotes included."""
    return escape(str(value), quote=True)


def mask(number: Any) -> str:
    """A phone number with all but its last four digits hidden."""
    text = str(number or "")
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) <= 4:
        return "•" * len(digits) or "-"
    return "•" * (len(digits) - 4) + digits[-4:]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _campaign_row(counts: reports.CampaignCounts, view: dict[str, Any]) -> str:
    request = counts.request or {}
    prog = view["progress"]
    cid = quote(counts.campaign)
    created = request.get("created_at")
    eta = view.get("eta")
    cells = [
        f'<td class="l id"><code>{cid}</code></td>',
        f'<td class="l">{quote(request.get("user") or "-")}</td>',
        f'<td class="l">{created:%m-%d %H:%M}</td>'
        if isinstance(created, datetime)
        else '<td class="l">-</td>',
        f'<td class="l"><span class="bar"><span style="width:{100 * prog["fraction"]:.1f}%">'
        f'</span></span><span data-field="progress">{100 * prog["fraction"]:.1f}%</span></td>',
        f'<td data-field="total">{view["total"]}</td>',
        *(f'<td class="{f}" data-field="{f}">{prog[f]}</td>' for f in FIELDS),
        f'<td data-field="delivery_rate">{_percent(view["delivery_rate"])}</td>',
        f'<td data-field="ended">{prog["ended"] or (f"{eta:%m-%d %H:%M}" if eta else "-")}</td>',
        '<td class="reasons">'
        + (", ".join(f"{quote(code)}&nbsp;{n}" for code, n in view["reasons"].items()) or "-")
        + "</td>",
    ]
    return f'<tr data-campaign="{cid}">{"".join(cells)}</tr>'


def render(
    db: Db,
    now: datetime,
    account: AccountStatus,
    refresh_seconds: int,
    rate_limit: float | None,
    optout_warn_rate: float = WARN_RATE,
) -> str:
    """The whole page; every value from the database is escaped. The opt-out rates are today's
    (UTC) STOPs against messages sent, counted as `sms-outbox status` and the daemon count them."""
    campaign_table = _campaign_table(db, now, rate_limit)
    states, failures = _states_and_failures(db)
    senders = optouts.on_day(InboundLog(db), now)
    state = account.state()
    state_rows = "".join(
        f'<tr><td class="l">{quote(s)}</td><td data-state="{quote(s)}">{n}</td></tr>'
        for s, n in sorted(states.items())
    )
    failure_rows = "".join(
        f'<tr><td class="l">{quote(k)}</td><td>{n}</td></tr>'
        for k, n in sorted(failures.items(), key=lambda item: -item[1])
    )
    sender_rows = _sender_rows(senders, optout_warn_rate)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_seconds}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sms-outbox</title><style>{STYLE}</style></head><body>
<h1>sms-outbox</h1>
<div class="meta">database <code>{quote(db.name)}</code> · as of {watch.iso(now)[:19]}Z ·
Flowroute account <span class="pill {quote(state)}" id="account">{quote(state)}</span> ·
refreshes every {refresh_seconds} s · read-only</div>
<h2>Campaigns</h2><div class="wide">{campaign_table}</div>
<div class="grid"><section><h2>Failures by reason</h2>
<table id="failures"><tr><th class="l">state: reason</th><th>messages</th></tr>
{failure_rows or '<tr><td class="l" colspan="2">none</td></tr>'}</table></section>
<section><h2>Opt-out rate per sender number today (UTC)</h2>
<table id="senders"><tr><th class="l">number</th><th>sent</th>
<th>STOP replies</th><th>rate</th></tr>
{sender_rows or '<tr><td class="l" colspan="4">nothing sent today</td></tr>'}</table>
<div class="meta">warned about over {_percent(optout_warn_rate)}</div></section>
<section><h2>All messages by state</h2>
<table id="states"><tr><th class="l">state</th><th>messages</th></tr>{state_rows}</table>
</section></div>
</body></html>
"""


def _campaign_table(db: Db, now: datetime, rate_limit: float | None) -> str:
    """The recent campaigns, one row each."""
    rows = []
    for counts in reports.recent_campaigns(db, 20):
        # The page's ETA is the waiting messages at the account's rate; `status --watch` also
        # lets each wait for its due time and quiet hours, which costs a read of every one.
        counts.waiting_due = [(now, "")] * sum(counts.states.get(s, 0) for s in reports.WAITING)
        rows.append(_campaign_row(counts, watch.summary(counts, now, rate_limit, None)))
    head = "".join(
        f'<th class="{f}">{f}</th>' for f in FIELDS
    )  # the bucket names double as CSS classes
    return (
        '<table id="campaigns"><tr><th class="l">campaign</th><th class="l">user</th>'
        '<th class="l">created (UTC)</th><th class="l">progress</th><th>total</th>'
        f"{head}<th>delivered %</th><th>ETA (UTC)</th><th class=\"l\">failures by reason</th>"
        "</tr>" + ("".join(rows) or '<tr><td class="l" colspan="13">no campaigns yet</td></tr>')
        + "</table>"
    )  # fmt: skip


def _states_and_failures(db: Db) -> tuple[dict[str, int], dict[str, int]]:
    """Messages by state, and the failed ones by state and reason."""
    states: dict[str, int] = {}
    failures: dict[str, int] = {}
    for (state, reason), n in reports.states_and_reasons(db).items():
        states[state] = states.get(state, 0) + n
        if reason and state in ("failed", "rejected", "undelivered", "expired", "unknown"):
            failures[f"{state}: {reason}"] = failures.get(f"{state}: {reason}", 0) + n
    return states, failures


def _sender_rows(senders: Iterable[Rate], optout_warn_rate: float) -> str:
    return "".join(
        f'<tr data-sender="{quote(r.source)}"{OVER if r.over(optout_warn_rate) else ""}>'
        f'<td class="l">{quote(r.source)}</td><td data-field="sent">{r.sent}</td>'
        f'<td data-field="opt_outs">{r.opt_outs}</td>'
        f'<td data-field="rate">{_percent(r.rate)}</td></tr>'
        for r in senders
    )
