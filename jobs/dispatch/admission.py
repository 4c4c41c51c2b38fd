"""Admission: each new producer document is checked by intake, queued or rejected, and sealed."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog

from jobs.clock import Clock
from jobs.dispatch.config import DispatchConfig
from jobs.errors import StoreError, StoreRefused, document_fault, refusal
from jobs.ports import Directory, Doc, Outbox
from jobs.rules import intake, replay, seal

log = structlog.get_logger("sms_outbox.cycle")


def admit(store: Outbox, grants: Directory, clock: Clock, config: DispatchConfig) -> int:
    """Validate new producer documents: each is queued or rejected with a reason, with its
    priority at most what its user's grant allows, and sealed. Returns how many were read."""
    docs = store.new_documents(limit=config.batch_size * 10)
    for doc in docs:
        try:
            _admit_one(store, doc, grants, clock.now(), config.max_segments)
        except StoreRefused as exc:
            if not document_fault(exc):
                raise
            store.set_aside(doc["_id"], {"state": None}, refusal(exc))
        except StoreError:
            raise
        except Exception as exc:
            # A document intake cannot even read costs that document, not the queue.
            log.exception("message.unreadable", message_id=str(doc["_id"]))
            store.set_aside(doc["_id"], {"state": None}, f"unreadable: {exc!r}"[:300])
    return len(docs)


def _admit_one(
    store: Outbox, doc: Doc, grants: Directory, now: datetime, max_segments: int
) -> None:
    admission = intake.admit(doc, now, max_segments)
    admission = replay.guard(doc, admission)
    if admission.fields.get("priority", 0) > 0:
        user = admission.fields["user"]
        admission = intake.clamp_priority(admission, grants.max_priority(user))
    sealer = store.sealer
    if sealer is not None:
        admitted = intake.stored(doc, admission)
        admission = replace(admission, seal=sealer.seal(admitted, seal.ADMITTED))
    if store.admit(doc["_id"], admission) is not None and admission.problem:
        log.info("message.rejected", message_id=str(doc["_id"]), reason=admission.problem.code)
