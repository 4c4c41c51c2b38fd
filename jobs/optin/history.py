"""A number's consent history for operators and audits: every consent and opt-out with its
evidence, the sign-up steps, and the texts the person sent, in time order."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import IO, Any

from jobs.mongo.optin import OptInStore
from jobs.rules import identity

Doc = dict[str, Any]
CSV_FIELDS = (
    "phone", "at", "event", "source", "method", "reason", "client", "user_agent",
    "terms_version", "terms_sha256", "code_provider_id", "join_inbound_id", "yes_inbound_id",
    "prompt_provider_id", "inbound_id", "text", "outcome",
)  # fmt: skip


def _when(entry: Mapping[str, Any]) -> float:
    at = entry.get("at")
    return at.timestamp() if isinstance(at, datetime) else float("-inf")


def entries(records: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]],
            texts: Iterable[Mapping[str, Any]]) -> list[Doc]:  # fmt: skip
    """The history from what is stored, oldest first; each consent and opt-out once."""
    found: list[Doc] = []
    seen: list[Any] = []
    for record in records:
        consents = [*record.get("consents", []), record.get("consent")]
        opt_outs = [*record.get("opt_outs", []), record.get("opted_out")]
        for kind, values in (("consent", consents), ("opt_out", opt_outs)):
            for value in values:
                if not value or value in seen:
                    continue
                seen.append(value)
                evidence = dict(value) if isinstance(value, Mapping) else {"legacy": value}
                found.append({"at": evidence.get("at"), "event": kind, **evidence})
    for event in events:
        found.append({**event, "event": event.get("event")})
    for text in texts:
        found.append({
            "at": text.get("received_at"), "event": "text", "inbound_id": text.get("_id"),
            "text": text.get("body"), "keyword": text.get("keyword"),
            "outcome": text.get("outcome"),
        })  # fmt: skip
    return sorted(found, key=_when)


def history(store: OptInStore, number: str) -> list[Doc]:
    """The whole history of `number` (normalised), oldest first, for `recipients show`; a
    Flowroute id not known when consent was recorded is looked up now."""
    records = store.consent_of(number)
    rows = entries(records, store.events_of(number), store.texts_of(number))
    for row in rows:
        for message, provider in (("code_message_id", "code_provider_id"),
                                  ("prompt_message_id", "prompt_provider_id")):  # fmt: skip
            if isinstance(row.get(message), str) and not row.get(provider):
                row[provider] = store.provider_id(row[message])
    return rows


def lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The history as lines for a terminal, one event each: when, what, and its evidence."""
    shown = []
    for row in rows:
        at = row["at"].isoformat() if isinstance(row.get("at"), datetime) else "-"
        details = ", ".join(
            f"{k}={_short(v)}" for k, v in row.items() if k not in ("at", "event") and v
        )
        shown.append(f"  {at}  {row['event']!s:<13}{details}")
    return shown


def _short(value: Any) -> str:
    if isinstance(value, Mapping) and "sha256" in value:
        return f"v{value.get('version')} sha256:{value.get('sha256')}"
    return str(value).replace("\n", " ")


def export(store: OptInStore, out: IO[str]) -> int:
    """Every number's consent history as CSV, one row per entry; returns the rows written."""
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    written = 0
    numbers = {identity.problem_of(stored)[0] for stored in store.numbers()}
    for number in sorted(n for n in numbers if n is not None):  # not numbers: see `check`
        for row in history(store, number):
            given = row.get("terms")
            terms: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
            flat = {k: _cell(v) for k, v in row.items()}
            flat.update(phone=number, terms_version=terms.get("version", ""),
                        terms_sha256=terms.get("sha256", ""))  # fmt: skip
            writer.writerow(flat)
            written += 1
    return written


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else str(value)
