"""Fan-out: a broadcast request becomes one message per verified recipient, resumably."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from jobs.clock import Clock
from jobs.dispatch.config import DispatchConfig
from jobs.errors import InputError
from jobs.keys import Signatures
from jobs.model import Problem, Reason, State
from jobs.ports import Directory, Doc, Outbox
from jobs.rules import phone, replay, seal, segments, signing, vetting

log = structlog.get_logger("sms_outbox.fanout")

CHUNK = 2000
# A claim of a broadcast request fans out for about this long, then hands the request back
# keeping its turn: its first messages are claimed and sent while the rest is still being made,
# and a daemon with one send at a time goes on sending between slices.
SLICE_SECONDS = 1.0
# With several sends in flight the fan-out holds one worker while the others send, so it slices
# less often: each hand-back waits for the next cycle to claim the request again.
SLICE_SECONDS_BESIDE_SENDS = 10.0
MAX_STORED_PHONE = 64


def child_id(campaign: str, number: str) -> str:
    """The id of a broadcast's message to `number`: the same every time, so a resumed fan-out
    collides with what it already inserted instead of doubling it."""
    return f"{campaign}:{number}"


def _recipient(stored: str) -> str:
    """The person a stored phone stands for: its normalised number. One that does not parse is
    kept as stored; the claim-time check rejects its message with the reason."""
    try:
        return phone.normalize(stored)
    except InputError:
        return stored


def _usable(recipient: str) -> bool:
    """A stored phone that does not parse becomes a message the claim rejects with its reason,
    unless it is too long to be anything but garbage: that one is skipped here, or it would
    carry its megabytes into the message's id and text."""
    if len(recipient) <= MAX_STORED_PHONE:
        return True
    log.warning("recipient.invalid_phone", phone_length=len(recipient))
    return False


def _child(
    parent: Doc, campaign: str, to: str, source: str, now: datetime, size: segments.Measure
) -> Doc:
    # The request's signed send_at is signed into each message too, so it binds them as well.
    send_at = {"send_at": parent["send_at"]} if isinstance(parent.get("send_at"), datetime) else {}
    return {
        **send_at,
        "_id": child_id(campaign, to),
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


def _lost(store: Outbox, doc: Doc, campaign: str) -> str:
    """The claim was taken away: by an operator's cancel, the messages this run inserted after
    the cancel are cancelled too; otherwise another daemon carries on."""
    now = store.find(doc["_id"]) or {}
    if now.get("state") != State.CANCELLED.value:
        log.warning("claim.lost")
        return "lost"
    who = now.get("cancelled")
    by = str(who.get("by")) if isinstance(who, dict) else "an operator"
    log.info("broadcast.cancelled", cancelled=store.cancel_campaign(campaign, by))
    return State.CANCELLED.value


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
    source, refused = _admit(store, directory, clock, config, doc, signatures)
    if source is None:
        return refused
    campaign = str(doc["_id"])
    size = segments.measure(segments.normalize_text(doc["body"]))
    after, total = _saved_progress(doc, campaign, signatures)
    started = clock.monotonic()
    slice_seconds = SLICE_SECONDS_BESIDE_SENDS if config.concurrency > 1 else SLICE_SECONDS
    while not stopping():
        if clock.monotonic() - started >= slice_seconds:
            store.release(doc, keep_place=True)
            log.info("broadcast.sliced", recipients=total)
            return State.QUEUED.value
        numbers, cursor = directory.verified_page(after, CHUNK)
        if cursor is None:
            break
        children = _children(store, doc, numbers, source, clock.now(), size, signatures)
        inserted = store.add_children(children)
        after, total = cursor, total + len(inserted)
        progress: Doc = {"fanout_cursor": after, "recipients": total}
        if signatures is not None:
            progress["fanout_seal"] = signatures.seal_progress(campaign, after, total)
        if store.renew(doc, config.lease, extra=progress) is None:
            return _lost(store, doc, campaign)
        store.mark_synced()  # this chunk's status copies, so the bookkeeping stays one chunk
        log.info("broadcast.progress", inserted=len(inserted), recipients=total)
    if stopping():
        store.release(doc)
        return State.QUEUED.value
    return _close(store, doc, campaign)


def _admit(
    store: Outbox,
    directory: Directory,
    clock: Clock,
    config: DispatchConfig,
    doc: Doc,
    signatures: Signatures | None,
) -> tuple[str | None, str]:
    """The number the broadcast goes out from, or None and the state it ended in: rejected
    (not vetted, or a copy of one already fanned out) or queued again (not yet due)."""
    vetted = vetting.vet(doc, clock.now(), directory, signatures, max_segments=config.max_segments)
    if vetted.problem is not None or vetted.source is None:
        assert vetted.problem is not None
        store.finish(doc, State.REJECTED, problem=vetted.problem)
        log.info("broadcast.rejected", reason=vetted.problem.code, detail=vetted.problem.detail)
        return None, State.REJECTED.value
    early = replay.not_before(doc, clock.now())
    if early is not None:
        store.retry_later(doc, early, replay.early_problem(early), refund=True)
        log.warning("broadcast.early", due_at=early.isoformat())
        return None, State.QUEUED.value
    spent_id = signing.signed_id(doc) or str(doc["_id"])
    if not store.spent.open_campaign(spent_id, doc["_id"]):
        problem = replay.replay_problem(spent_id)
        store.finish(doc, State.REJECTED, problem=problem)
        log.warning("broadcast.rejected", reason=problem.code, detail=problem.detail)
        return None, State.REJECTED.value
    return vetted.source, State.QUEUED.value


def _children(
    store: Outbox,
    doc: Doc,
    numbers: list[str],
    source: str,
    now: datetime,
    size: segments.Measure,
    signatures: Signatures | None,
) -> list[Doc]:
    """One chunk's messages, signed and sealed. One person stored under several spellings is
    one recipient: the children are keyed on the normalised number, so a spelling met again
    (here, in a later chunk, or after a restart) collides with the message already made."""
    campaign = str(doc["_id"])
    people = [p for p in dict.fromkeys(_recipient(n) for n in numbers) if _usable(p)]
    children = [_child(doc, campaign, to, source, now, size) for to in people]
    for child in children:
        if signatures is not None:
            child["signature"] = signatures.sign_child(child)
        if store.sealer is not None:
            child["seal"] = store.sealer.seal(child, seal.MADE)
    return children


def _close(store: Outbox, doc: Doc, campaign: str) -> str:
    """Every recipient has a message: the broadcast is expanded, or rejected with none."""
    spent_id = signing.signed_id(doc) or campaign
    total = store.count_children(campaign)
    if total == 0:
        problem = Problem(Reason.NO_RECIPIENTS, "no verified recipient to send to")
        store.finish(doc, State.REJECTED, problem=problem)
        store.spent.close_campaign(spent_id)
        log.info("broadcast.rejected", reason=problem.code)
        return State.REJECTED.value
    store.finish(doc, State.EXPANDED, extra={"recipients": total})
    store.spent.close_campaign(spent_id)
    log.info("broadcast.expanded", recipients=total)
    return State.EXPANDED.value


def _saved_progress(
    doc: Doc, campaign: str, signatures: Signatures | None
) -> tuple[str | None, int]:
    """Where an earlier run of this fan-out stopped. With signatures on, only progress sealed by
    a daemon counts: anyone who can write could otherwise make the fan-out skip recipients.
    Starting over is safe, only slower: the messages already there are skipped."""
    after, total = doc.get("fanout_cursor"), doc.get("recipients")
    if not isinstance(after, str) or isinstance(total, bool) or not isinstance(total, int):
        return None, 0
    if signatures is not None and not signatures.progress_sealed(
        campaign, after, total, doc.get("fanout_seal")
    ):
        return None, 0
    return after, total
