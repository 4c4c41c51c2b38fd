"""Campaigns in the terminal: a summary, a live progress bar, the recent list, a CSV export."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobs.clock import as_utc
from jobs.mongo.reports import CampaignCounts
from jobs.rules import progress
from jobs.rules.quiet_hours import Window

BUCKET_STYLES = {
    "sent": "cyan",
    "delivered": "green",
    "failed": "red",
    "rejected": "magenta",
    "waiting": "yellow",
    "cancelled": "bright_black",
    "other": "white",
}
OPTIONAL = ("cancelled", "other")


def summary(
    counts: CampaignCounts, now: datetime, rate_limit: float | None, window: Window | None
) -> dict[str, Any]:
    """Everything `status --campaign` reports, as plain data (dates stay datetimes)."""
    prog = progress.progress(counts.states, (counts.request or {}).get("state"))
    finish = None if prog.done else progress.eta(now, counts.waiting_due, rate_limit, window)
    return {
        "campaign": counts.campaign,
        "request": counts.request,
        "total": counts.total,
        "states": counts.states,
        "reasons": counts.reasons,
        "progress": {
            **prog.counts,
            "done": prog.done,
            "ended": prog.ended,
            "fraction": round(prog.fraction, 4),
        },
        "delivery_rate": progress.delivery_rate(counts.states),
        "rate_per_second": round(counts.rate(now), 2),
        "eta": finish,
        "as_of": now,
    }


def render(view: dict[str, Any]) -> Group:
    """The live view: a bar, the counts by bucket, the rate and the ETA."""
    buckets = view["progress"]
    total = view["total"]
    finished = total - buckets["waiting"]
    head = Text.assemble(("campaign ", "bold"), (str(view["campaign"]), "bold cyan"))
    request = view.get("request") or {}
    if request.get("state") and request["state"] != "expanded":
        head.append(f"  (request {request['state']})", style="yellow")
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(total, 1), completed=finished if total else 0, width=40),
        Text(f"{100 * buckets['fraction']:5.1f}%  {finished:,} / {total:,}", style="bold"),
    )
    counts = Text()
    for name, style in BUCKET_STYLES.items():
        if name in OPTIONAL and not buckets[name]:
            continue
        counts.append(f"{name} ", style=style)
        counts.append(f"{buckets[name]:,}   ", style=f"bold {style}")
    lines: list[Any] = [head, bar, counts]
    rate = Text(f"rate {view['rate_per_second']:.1f}/s")
    if buckets["ended"] == "cancelled":
        rate.append("   cancelled", style="bold")
    elif buckets["done"]:
        rate.append("   done", style="bold green")
    elif view["eta"] is not None:
        eta: datetime = view["eta"]
        left = max((eta - view["as_of"]).total_seconds(), 0)
        rate.append(f"   ETA {eta:%Y-%m-%d %H:%M} UTC (in {_duration(left)})")
    lines.append(rate)
    if view["reasons"]:
        reasons = ", ".join(f"{code} {n:,}" for code, n in view["reasons"].items())
        lines.append(Text(f"reasons: {reasons}", style="dim"))
    return Group(*lines)


def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {sec:02d} s" if minutes else f"{sec} s"


def watch(
    read: Callable[[], dict[str, Any]],
    console: Console,
    interval: float,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Redraw (or, with `emit`, hand over) the view every `interval` seconds until it is done."""
    view = read()
    if emit is not None:
        emit(view)
        while not view["progress"]["done"]:
            time.sleep(interval)
            view = read()
            emit(view)
        return view
    with Live(render(view), console=console, auto_refresh=False) as live:
        while not view["progress"]["done"]:
            time.sleep(interval)
            view = read()
            live.update(render(view), refresh=True)
    return view


def campaign_rows(found: Iterable[CampaignCounts]) -> list[dict[str, Any]]:
    """The recent campaigns as rows for `sms-outbox campaigns`."""
    rows = []
    for counts in found:
        request = counts.request or {}
        prog = progress.progress(counts.states, request.get("state"))
        rows.append(
            {
                "campaign": counts.campaign,
                "user": request.get("user"),
                "created_at": request.get("created_at"),
                "request": request.get("state"),
                "total": counts.total,
                **prog.counts,
                "done": prog.done,
                "ended": prog.ended,
                "fraction": round(prog.fraction, 4),
            }
        )
    return rows


def campaign_table(rows: list[dict[str, Any]]) -> Table:
    """The recent campaigns as a table for the terminal."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("campaign", "created (UTC)", "user", "progress", "total"):
        table.add_column(column, no_wrap=True)
    # `cancelled` and `other` only when some campaign has any.
    buckets = [b for b in BUCKET_STYLES if b not in OPTIONAL or any(r[b] for r in rows)]
    for name in buckets:
        table.add_column(name, justify="right", style=BUCKET_STYLES[name], no_wrap=True)
    for row in rows:
        created = row["created_at"]
        state = f"{100 * row['fraction']:.0f}%" + ("" if row["done"] else " …")
        if row["ended"] == "cancelled":
            state = "cancelled"
        elif row["request"] not in (None, "expanded"):
            state = str(row["request"])
        table.add_row(
            row["campaign"],
            f"{created:%Y-%m-%d %H:%M}" if isinstance(created, datetime) else "-",
            str(row["user"] or "-"),
            state,
            f"{row['total']:,}",
            *(f"{row[name]:,}" for name in buckets),
        )
    return table


CSV_FIELDS = ("number", "state", "reason", "created_at", "sent_at", "updated_at")


def write_csv(docs: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """One row per recipient of a campaign; dates in ISO-8601 UTC. Returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    rows = 0
    for doc in docs:
        error = doc.get("error") if isinstance(doc.get("error"), dict) else {}
        writer.writerow(
            [
                _cell(doc.get("to")),
                _cell(doc.get("state")),
                _cell((error or {}).get("code")),
                *(_cell(doc.get(key)) for key in ("created_at", "sent_at", "updated_at")),
            ]
        )
        rows += 1
    return rows


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula is quoted with a leading '."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value)
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def iso(value: datetime) -> str:
    """ISO-8601 in UTC with a Z, milliseconds kept."""
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
