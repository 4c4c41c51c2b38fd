"""What `sms-outbox status` shows of the callbacks Flowroute's records have not confirmed."""

from __future__ import annotations

from typing import Any

from jobs.mongo.inbox import Inbox

Doc = dict[str, Any]
SHOWN = 5


def read(inbox: Inbox, limit: int = SHOWN) -> Doc:
    """How many callbacks are unverified (set aside, or still being looked up), and the latest."""
    count, latest = inbox.unverified(limit)
    return {"count": count, "latest": [_row(entry) for entry in latest]}


def _row(entry: Doc) -> Doc:
    stored = entry.get("fields")
    fields: Doc = stored if isinstance(stored, dict) else {}
    row = {k: entry.get(k) for k in ("kind", "state", "received_at", "outcome", "detail")}
    names = ("from", "to", "body", "inbound_id", "provider_id", "status")
    row.update({k: fields.get(k) for k in names if k in fields})
    return row


def text(report: Doc) -> str:
    """The report as lines for a terminal."""
    lines = [
        f"unverified  {report['count']} callbacks Flowroute's records have not confirmed"
        " (ignored but a STOP's opt-out; 'waiting': still looked up); latest:"
    ]
    for row in report["latest"]:
        said = row.get("body") if row["kind"] == "inbound" else row.get("status")
        who = row.get("from") or row.get("provider_id") or "-"
        done = row.get("outcome") or "-"
        lines.append(
            f"  {row['received_at']}  {row['kind']}  {row['state']}  {who}"
            f"  {str(said)[:20]!r}  {done}: {row.get('detail')}"
        )
    return "\n".join(lines)
