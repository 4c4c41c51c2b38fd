"""A change the transition table decided (jobs/rules/transitions.py), as MongoDB writes it: the
fence as the filter, the fields as `$set`, `$unset` and `$inc`."""

from __future__ import annotations

from typing import Any

from jobs.rules.transitions import Change

Doc = dict[str, Any]


def fence(doc_id: Any, change: Change) -> Doc:
    """The filter that matches `doc_id` only while it still holds the fence of `change`."""
    return {"_id": doc_id, **change.fence}


def update(change: Change) -> Doc:
    """The update operators of `change` (none empty: the server refuses an empty one)."""
    ops: Doc = {}
    if change.fields:
        ops["$set"] = dict(change.fields)
    if change.gone:
        ops["$unset"] = dict.fromkeys(change.gone, "")
    if change.inc:
        ops["$inc"] = dict(change.inc)
    return ops
