"""Believing an inbound text only when Flowroute's own record of it agrees: the record with its
id is inbound, from the same number, to the same number, with the same body."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobs.errors import InputError, NotConfirmedYet, RetryableError
from jobs.records import MessageRecords
from jobs.rules import phone

log = structlog.get_logger("sms_outbox.optin")
# Flowroute's records may lag a few seconds behind its callbacks; a text whose record is still
# missing after this long is not believed.
RECORD_GRACE = timedelta(minutes=2)


def matches(record: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether Flowroute's record says what the callback said."""
    if record.get("direction") != "inbound" or record.get("body") != fields.get("body"):
        return False
    try:
        return bool(
            phone.normalize(record.get("from")) == fields.get("from")
            and phone.normalize(record.get("to")) == fields.get("to")
        )
    except InputError:
        return False


def confirmed(
    records: MessageRecords | None,
    fields: Mapping[str, Any],
    received_at: Any,
    now: datetime,
) -> bool:
    """True when Flowroute's record confirms the inbound text; False when it contradicts it,
    is missing past the grace period, or cannot be asked. Raises NotConfirmedYet to try again
    later while the record may still be on its way."""
    inbound_id = fields.get("inbound_id")
    if records is None or not isinstance(inbound_id, str) or not inbound_id.startswith("mdr"):
        return False  # no id Flowroute could have given, or no account to ask
    try:
        record = records.get(inbound_id)
    except RetryableError as exc:
        if isinstance(received_at, datetime) and now - received_at < RECORD_GRACE:
            raise NotConfirmedYet(f"no record of {inbound_id} yet ({exc.code})") from None
        log.warning("inbound.unconfirmed", inbound_id=inbound_id, reason=exc.code)
        return False
    if not matches(record, fields):
        log.warning("inbound.contradicted", inbound_id=inbound_id)
        return False
    return True
