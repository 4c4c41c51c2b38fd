"""How `status` reads to a person: a message, a campaign, the account and opt-out rates."""

from __future__ import annotations

from typing import Any

from jobs.mongo.store import Doc
from jobs.rules.optout_rate import Rate
from scheduler.surfaces import watch


def status_text(doc: Doc) -> str:
    """One message (or broadcast request), a field a line."""
    lines = [f"{key:<12}{doc[key]}" for key in ("_id", "state") if key in doc]
    for key in ("to", "from", "user", "campaign", "attempts", "provider_id", "recipients"):
        if doc.get(key) is not None:
            lines.append(f"{key:<12}{doc[key]}")
    if doc.get("error"):
        lines.append(f"{'reason':<12}{doc['error'].get('code')}: {doc['error'].get('detail')}")
    if doc.get("waiting"):
        lines.append(f"{'waiting':<12}{doc['waiting']}")
    if doc.get("cancelled"):
        lines.append(
            f"{'cancelled':<12}by {doc['cancelled'].get('by')} at {doc['cancelled'].get('at')}"
        )
    for earlier in doc.get("history") or []:
        code = (earlier.get("error") or {}).get("code")
        who = earlier.get("retried_by")
        lines.append(f"{'earlier':<12}{earlier.get('state')} ({code}), retried by {who}")
    receipts = doc.get("receipts")
    if isinstance(receipts, list) and receipts and isinstance(receipts[-1], dict):
        last = receipts[-1]
        lines.append(f"{'carrier':<12}{last.get('status')} ({last.get('status_code')})")
    for key in ("due_at", "created_at", "sent_at", "delivered_at", "final_at", "updated_at"):
        if doc.get(key) is not None:
            lines.append(f"{key:<12}{doc[key]}")
    return "\n".join(lines)


def optout_text(rates: list[Rate], threshold: float) -> str:
    """Today's opt-out rate per sending number, flagged over the warning threshold."""
    day = rates[0].day if rates else "today"
    lines = [f"opt-outs on {day} (UTC) by sending number; warning over {threshold:.0%}:"]
    for r in rates:
        rate = "-" if r.rate is None else f"{r.rate:.1%}"
        flag = "  OVER THRESHOLD" if r.over(threshold) else ""
        lines.append(f"  {r.source}  {r.opt_outs} opt-outs / {r.sent} sent  {rate}{flag}")
    if not rates:
        lines.append("  nothing sent and no opt-outs yet")
    return "\n".join(lines)


def account_text(held: dict[str, Any]) -> str:
    """Whether the Flowroute account sends or is held, and why."""
    if not held.get("held"):
        return "account     sending"
    return (
        f"account     held since {held['since']}: Flowroute answered {held['code']}"
        f" ({held['detail']}); next probe at {held['probe_at']}"
    )


def campaign_text(summary: dict[str, Any]) -> str:
    """A campaign's counts by state, its receipts, its ETA and its reasons."""
    lines = [f"campaign {summary['campaign']}: {summary['total']} messages"]
    if summary["account"].get("held"):
        lines.append(account_text(summary["account"]))
    request = summary.get("request")
    if request:
        lines.append(f"  request     {request.get('state')}")
        if request.get("error"):
            lines.append(f"  reason      {request['error'].get('code')}")
    lines += [f"  {state:<12}{count}" for state, count in summary["states"].items()]
    receipts = summary["delivery"]
    rate = "-" if receipts["rate"] is None else f"{receipts['rate']:.1%}"
    lines.append(
        f"receipts: {receipts['delivered']} delivered, {receipts['undelivered']} undelivered,"
        f" {receipts['expired']} expired, {receipts['awaiting']} awaiting; delivery rate {rate}"
    )
    if summary.get("eta") is not None:
        lines.append(f"  {'eta':<12}{watch.iso(summary['eta'])}")
    if summary["reasons"]:
        lines.append("by reason:")
        lines += [f"  {code:<20}{count}" for code, count in summary["reasons"].items()]
    return "\n".join(lines)


def progress_line(view: dict[str, Any]) -> str:
    """One refresh of `status --watch` as a plain line, for a log file or a pipe."""
    buckets = view["progress"]
    counts = "  ".join(f"{name} {buckets[name]}" for name in watch.BUCKET_STYLES if buckets[name])
    line = f"{watch.iso(view['as_of'])}  {100 * buckets['fraction']:5.1f}%  {counts}"
    line += f"  rate {view['rate_per_second']:.1f}/s"
    if buckets["ended"]:
        return f"{line}  {buckets['ended']}"
    return line + (f"  ETA {watch.iso(view['eta'])}" if view["eta"] is not None else "")
