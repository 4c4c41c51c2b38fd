"""How values read from the database are shown: masked numbers, percentages, times, rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobs.mongo.reports import CampaignCounts
from jobs.rules import progress
from jobs.rules.quiet_hours import Window


def mask(number: Any) -> str:
    """A phone number with all but its last four digits hidden."""
    digits = "".join(c for c in str(number or "") if c.isdigit())
    if len(digits) <= 4:
        return "•" * len(digits) or "-"
    return "•" * (len(digits) - 4) + digits[-4:]


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if isinstance(value, datetime) else "-"


def summary(
    counts: CampaignCounts, now: datetime, rate: float | None, window: Window | None
) -> dict[str, Any]:
    """A campaign as plain data: progress by bucket, delivery rate, opt-outs, ETA, sender."""
    request = counts.request or {}
    prog = progress.progress(counts.states, request.get("state"))
    finish = None if prog.done else progress.eta(now, counts.waiting_due, rate, window)
    opt_outs = sum(n for code, n in counts.reasons.items() if code.startswith("opted_out"))
    opt_outs += sum(n for code, n in counts.reasons.items() if code.endswith(":1110"))
    return {
        "campaign": counts.campaign,
        "user": request.get("user"),
        "request_state": request.get("state"),
        "created_at": request.get("created_at"),
        "total": counts.total,
        "states": counts.states,
        "reasons": counts.reasons,
        "progress": {**prog.counts, "done": prog.done, "fraction": round(prog.fraction, 4)},
        "delivery_rate": progress.delivery_rate(counts.states),
        "opt_outs": opt_outs,
        "eta": finish,
    }


def row(view: dict[str, Any]) -> dict[str, str]:
    """One campaign as the campaigns table and its JSON show it (text only)."""
    prog = view["progress"]
    return {
        "campaign": str(view["campaign"]),
        "user": str(view["user"] or "-"),
        "created": when(view["created_at"]),
        "progress": percent(prog["fraction"]),
        "total": str(view["total"]),
        **{name: str(prog[name]) for name in ("sent", "delivered", "failed", "rejected")},
        "waiting": str(prog["waiting"]),
        "delivery_rate": percent(view["delivery_rate"]),
        "eta": "done" if prog["done"] else when(view["eta"]),
    }


COLUMNS = (
    ("campaign", "campaign"), ("user", "sent by"), ("created", "created"),
    ("progress", "progress"), ("total", "total"), ("sent", "sent"),
    ("delivered", "delivered"), ("failed", "failed"), ("rejected", "rejected"),
    ("waiting", "waiting"), ("delivery_rate", "delivered %"), ("eta", "ETA"),
)  # fmt: skip
