"""Importing recipients in bulk: a CSV streamed in chunks, each chunk looked up in one query and
written in unordered bulk writes."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import phonenumbers
from pymongo import InsertOne, UpdateOne
from pymongo.collection import Collection

from jobs.clock import as_utc
from jobs.errors import InputError
from jobs.rules import phone
from jobs.rules.identity import spellings

Doc = dict[str, Any]
CHUNK_ROWS = 5_000
# DocumentDB refuses more than this many operations in one write batch, whatever it advertises.
MAX_BATCH_OPS = 25_000
SHOWN_REFUSALS = 20


@dataclass
class ImportSummary:
    """What an import did: people new, already present, spellings merged into one person, and
    lines refused (the first few kept with why, all counted)."""

    new: int = 0
    present: int = 0
    merged: int = 0
    refused: int = 0
    first_refused: list[tuple[int, str]] = field(default_factory=list)

    def refuse(self, line: int, why: str) -> None:
        self.refused += 1
        if len(self.first_refused) < SHOWN_REFUSALS:
            self.first_refused.append((line, why))


@dataclass
class _Row:
    line: int
    spelling: str
    number: str
    verified: bool


def truthy(text: str) -> bool:
    """A `verified` column's yes."""
    return text.strip().lower() in {"1", "true", "yes", "y", "verified"}


def rows(handle: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """The CSV's rows with their line numbers, blank rows left out."""
    for line, row in enumerate(csv.reader(handle), start=1):
        if row and row[0].strip():
            yield line, row


def chunks(
    numbered: Iterable[tuple[int, list[str]]], size: int
) -> Iterator[list[tuple[int, list[str]]]]:
    """The rows in lists of `size`."""
    chunk: list[tuple[int, list[str]]] = []
    for item in numbered:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_rows(
    users: Collection[Doc],
    numbered: Iterable[tuple[int, list[str]]],
    *,
    verified: bool,
    now: datetime,
    by: str,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Add every row's number as `Directory.add` would, a chunk at a time: a person found under
    any spelling is updated (a verified row records consent and stores the normalised number),
    a new one is inserted; a header line is skipped."""
    summary = ImportSummary()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as the server keeps it
    # Into an empty collection every record is written normalised: one spelling to look up.
    fresh = users.find_one({}, {"_id": 1}) is None
    normalizer = Normalizer()
    for chunk in chunks(numbered, CHUNK_ROWS):
        parsed = _parse(chunk, verified, summary, normalizer)
        _write(users, parsed, now, by, summary, fresh)
        if progress is not None:
            progress(chunk[-1][0])
    return summary


def _parse(
    chunk: list[tuple[int, list[str]]],
    verified: bool,
    summary: ImportSummary,
    normalizer: Normalizer,
) -> list[_Row]:
    parsed = []
    for line, row in chunk:
        spelling = row[0]
        try:
            number = normalizer.normalize(spelling)
        except InputError as exc:
            if line == 1 and not any(ch.isdigit() for ch in spelling):
                continue  # a header
            summary.refuse(line, str(exc))
            continue
        here = verified or truthy(row[1] if len(row) > 1 else "")
        parsed.append(_Row(line, spelling.strip(), number, here))
    return parsed


def _write(
    users: Collection[Doc],
    parsed: list[_Row],
    now: datetime,
    by: str,
    summary: ImportSummary,
    fresh: bool,
) -> None:
    """One lookup of every spelling of the chunk's people, then one bulk write of what changes."""
    people: dict[str, list[_Row]] = {}
    for row in parsed:
        people.setdefault(row.number, []).append(row)
    if not people:
        return
    owner = {s: number for number in people for s in ([number] if fresh else spellings(number))}
    existing: dict[str, list[Doc]] = {}
    query = {"phone": {"$in": list(owner)}}
    for record in users.find(query, {"phone": 1, "created_at": 1}):
        number = owner.get(record.get("phone"))  # type: ignore[arg-type]
        if number is not None:
            existing.setdefault(number, []).append(record)
    ops: list[InsertOne[Doc] | UpdateOne] = []
    consent = {"at": now, "source": by}
    for number, rows_of in people.items():
        records = existing.get(number, [])
        # Each spelling beyond the first, in the file or stored, is merged into this person.
        spelled = {row.spelling for row in rows_of} | {str(r.get("phone")) for r in records}
        summary.merged += len(spelled) - 1
        wants_consent = any(row.verified for row in rows_of)
        if not records:
            summary.new += 1
            doc: Doc = {"phone": number, "verified": wants_consent, "created_at": now}
            if wants_consent:
                doc["consent"] = consent
            ops.append(InsertOne(doc))
            continue
        if not any(_same_instant(r.get("created_at"), now) for r in records):
            summary.present += 1  # stored before this import (not by an earlier chunk of it)
        if wants_consent:
            fields = {"phone": number, "verified": True, "consent": consent}
            ops.append(UpdateOne({"_id": records[0]["_id"]}, {"$set": fields}))
    for start in range(0, len(ops), MAX_BATCH_OPS):
        users.bulk_write(ops[start : start + MAX_BATCH_OPS], ordered=False)


_PLAIN = re.compile(r"^\+?[\d\s().-]+$")


class Normalizer:
    """`phone.normalize` for a whole file, faster: a number written with digits and punctuation
    alone is checked from its digits, without parsing the text (the costly part), and anything
    else, or any number found invalid, goes through `phone.normalize`, which words every
    refusal. The verdict is libphonenumber's either way."""

    def normalize(self, spelling: str) -> str:
        text = spelling.strip()
        if not _PLAIN.match(text):
            return phone.normalize(spelling)
        digits = re.sub(r"\D", "", text)
        if len(digits) == 10 and not text.startswith("+"):
            digits = "1" + digits
        if len(digits) != 11 or digits[0] != "1":
            return phone.normalize(spelling)
        number = phonenumbers.PhoneNumber(country_code=1, national_number=int(digits[1:]))
        if digits[1] != "0" and phonenumbers.is_valid_number(number):
            return digits
        return phone.normalize(spelling)


def _same_instant(value: Any, now: datetime) -> bool:
    return isinstance(value, datetime) and as_utc(value) == as_utc(now)
