"""Admission: each new producer document is checked by intake, queued or rejected, and sealed."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog

from jobs.clock import Clock
from jobs.dispatch.config import DispatchConfig
from jobs.errors import StoreError, refusal
from jobs.ports import Directory, Doc, Outbox
from jobs.rules import intake, replay, seal
from jobs.rules.intake import Admission

log = structlog.get_logger("sms_outbox.cycle")


# Documents read and admitted per cycle: written in bulk, so a thousand of them (valid or not)
# cost a few commands and never hold the queue for long. At most 64 KiB each are read whole.
PER_CYCLE = 1000


def admit(store: Outbox, grants: Directory, clock: Clock, config: DispatchConfig) -> int:
    """Validate new producer documents: each is queued or rejected with a reason, with its
    priority at most what its user's grant allows, and sealed. Returns how many were read."""
    docs = store.new_documents(limit=max(PER_CYCLE, config.batch_size * 10))
    admitted: list[tuple[Doc, Admission]] = []
    for doc in docs:
        try:
            admitted.append((doc, _decide(store, doc, grants, clock.now(), config.max_segments)))
        except StoreError:
            raise
        except Exception as exc:
            # A document intake cannot even read costs that document, not the queue.
            log.exception("message.unreadable", message_id=str(doc["_id"]))
            store.set_aside(doc["_id"], {"state": None}, f"unreadable: {exc!r}"[:300])
    for doc_id, refused in store.admit_many(admitted):
        store.set_aside(doc_id, {"state": None}, refusal(refused))
    for doc, admission in admitted:
        if admission.problem is not None:
            log.info("message.rejected", message_id=str(doc["_id"]), reason=admission.problem.code)
    return len(docs)


def _decide(
    store: Outbox, doc: Doc, grants: Directory, now: datetime, max_segments: int
) -> Admission:
    """What intake makes of one document: its admission, clamped and sealed."""
    admission = intake.admit(doc, now, max_segments)
    admission = replay.guard(doc, admission)
    if admission.fields.get("priority", 0) > 0:
        user = admission.fields["user"]
        admission = intake.clamp_priority(admission, grants.max_priority(user))
    sealer = store.sealer
    if sealer is not None:
        admitted = intake.stored(doc, admission)
        admission = replace(admission, seal=sealer.seal(admitted, seal.ADMITTED))
    return admission
