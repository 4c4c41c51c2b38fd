"""Fan-out: a broadcast request becomes one message per verified recipient, resumably."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from jobs.clock import Clock
from jobs.dispatch.config import DispatchConfig
from jobs.dispatch.ports import Directory, Doc, Outbox
from jobs.errors import InputError
from jobs.keys import Signatures
from jobs.model import Problem, Reason, State
from jobs.rules import phone, segments, vetting

log = structlog.get_logger("sms_outbox.fanout")

CHUNK = 500


def child_id(campaign: str, number: str) -> str:
    """The id of a broadcast's message to `number`: the same every time, so a resumed fan-out
    collides with what it already inserted instead of doubling it."""
    return f"{campaign}:{number}"


def _child(
    parent: Doc, campaign: str, number: str, source: str, now: datetime, size: segments.Measure
) -> Doc:
    try:
        to = phone.normalize(number)
    except InputError:
        to = number  # kept as stored; the claim-time check rejects it with the reason
    return {
        "_id": child_id(campaign, number),
        "kind": "message",
        "user": parent["user"],
        "to": to,
        "from": source,
        "body": parent["body"],
        "campaign": campaign,
        "segments": size.segments,
        "encoding": size.encoding,
        "priority": parent.get("priority", 0),
        "due_at": parent.get("due_at", now),
        "state": State.QUEUED.value,
        "attempts": 0,
        "rev": 1,
        "synced": False,
        "created_at": now,
        "updated_at": now,
    }


def expand(
    store: Outbox,
    directory: Directory,
    clock: Clock,
    config: DispatchConfig,
    doc: Doc,
    stopping: Callable[[], bool],
    signatures: Signatures | None = None,
) -> str:
    """Insert the broadcast's messages in chunks, saving progress with each; returns the state."""
    vetted = vetting.vet(doc, clock.now(), directory, signatures, max_segments=config.max_segments)
    source = vetted.source
    if vetted.problem is not None or source is None:
        assert vetted.problem is not None
        store.finish(doc, State.REJECTED, problem=vetted.problem)
        log.info("broadcast.rejected", reason=vetted.problem.code, detail=vetted.problem.detail)
        return State.REJECTED.value
    campaign = str(doc["_id"])
    size = segments.measure(segments.normalize_text(doc["body"]))
    # Progress saved by an earlier run; these fields are the daemon's, but anyone could write them.
    saved_after, saved_total = doc.get("fanout_after"), doc.get("recipients")
    after: str | None = saved_after if isinstance(saved_after, str) else None
    total = saved_total if isinstance(saved_total, int) and not isinstance(saved_total, bool) else 0
    while not stopping():
        numbers = directory.verified_after(after, CHUNK)
        if not numbers:
            break
        now = clock.now()
        children = [_child(doc, campaign, n, source, now, size) for n in numbers]
        if signatures is not None:
            for child in children:
                child["signature"] = signatures.sign_child(child)
        inserted = store.add_children(children)
        after, total = numbers[-1], total + len(numbers)
        progress = {"fanout_after": after, "recipients": total}
        if store.renew(doc, config.lease, extra=progress) is None:
            log.warning("claim.lost")
            return "lost"
        log.info("broadcast.progress", inserted=len(inserted), recipients=total)
    if stopping():
        store.release(doc)
        return State.QUEUED.value
    if total == 0:
        problem = Problem(Reason.NO_RECIPIENTS, "no verified recipient to send to")
        store.finish(doc, State.REJECTED, problem=problem)
        log.info("broadcast.rejected", reason=problem.code)
        return State.REJECTED.value
    store.finish(doc, State.EXPANDED, extra={"recipients": total})
    log.info("broadcast.expanded", recipients=total)
    return State.EXPANDED.value
