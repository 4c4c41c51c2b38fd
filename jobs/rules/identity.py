"""Identity of a recipient: one person is one normalised number, whatever spellings `users` holds.

The rules here are pure: which stored spellings belong to a number, what several records of
one number say about consent taken together, and what is wrong with a `users` collection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobs.errors import InputError
from jobs.rules import phone

Doc = dict[str, Any]


def spellings(number: str) -> list[str]:
    """The ways the daemon finds a normalised `number` stored: the 11-digit form, `+1…` and ten
    digits. Any other layout (`(206) 555-0101`) is not matched at send time: `recipients check`
    lists such records and `--fix` rewrites them."""
    return [number, "+" + number, number[1:]]


def _latest(values: Iterable[Any]) -> Any:
    """The evidence with the latest `at`; undated evidence (legacy `True`) counts as oldest."""
    return max((v for v in values if v), key=_when, default=None)


def _when(value: Any) -> float:
    at = value.get("at") if isinstance(value, dict) else None
    return at.timestamp() if isinstance(at, datetime) else float("-inf")


def view(number: str, records: Iterable[Mapping[str, Any]]) -> Doc | None:
    """What every record of `number` says together, or None when there is none.

    Consent needs a verified record; an opt-out on any record wins over every verified one.
    """
    docs = list(records)
    if not docs:
        return None
    opt_outs = [doc.get("opted_out") for doc in docs if doc.get("opted_out")]
    merged: Doc = {
        "phone": number,
        "verified": any(doc.get("verified") is True for doc in docs),
        "records": len(docs),
    }
    consent = _latest(doc.get("consent") for doc in docs)
    if consent is not None:
        merged["consent"] = consent
    if opt_outs:
        merged["opted_out"] = _latest(opt_outs)
    return merged


@dataclass
class Audit:
    """What is wrong with `users`: by number, the records of each person stored more than once
    or not in the 11-digit form, and the records whose phone is not a usable number."""

    records: dict[str, list[Doc]] = field(default_factory=dict)
    invalid: list[tuple[Any, str]] = field(default_factory=list)

    def duplicates(self) -> dict[str, list[Any]]:
        """Numbers held by several records, with the phones as stored."""
        return {n: [d.get("phone") for d in docs] for n, docs in self.records.items()
                if len(docs) > 1}  # fmt: skip

    def conflicts(self) -> list[str]:
        """Numbers with an opt-out on one record and consent on another: the opt-out wins."""
        return [
            n for n, docs in self.records.items()
            if any(d.get("opted_out") for d in docs)
            and any(d.get("verified") is True and not d.get("opted_out") for d in docs)
        ]  # fmt: skip

    def misspelled(self) -> dict[str, list[Any]]:
        """Numbers stored in another form than the 11 digits (each fixable by --fix)."""
        return {n: [d.get("phone") for d in docs] for n, docs in self.records.items()
                if any(d.get("phone") != n for d in docs)}  # fmt: skip

    def to_fix(self) -> dict[str, list[Doc]]:
        """The numbers whose records --fix rewrites into one."""
        return {n: docs for n, docs in self.records.items()
                if len(docs) > 1 or docs[0].get("phone") != n}  # fmt: skip

    @property
    def clean(self) -> bool:
        return not self.to_fix() and not self.invalid


def problem_of(stored: Any) -> tuple[str | None, str | None]:
    """The normalised number a stored phone stands for, or why it stands for none."""
    try:
        return phone.normalize(stored), None
    except InputError as exc:
        return None, str(exc)


def audit(docs: Iterable[Mapping[str, Any]]) -> Audit:
    """Group `users` documents by the number they stand for; list those that stand for none."""
    found = Audit()
    for doc in docs:
        number, why = problem_of(doc.get("phone"))
        if number is None:
            found.invalid.append((doc.get("_id"), f"phone {doc.get('phone')!r}: {why}"))
            continue
        found.records.setdefault(number, []).append(dict(doc))
    return found


def merged_record(number: str, docs: list[Doc]) -> Doc:
    """One record for `number` that keeps the evidence of all of `docs`: every consent in
    `consents`, every opt-out in `opt_outs`, and the phones merged in `merged_from`. The opt-out
    still wins: `opted_out` is kept when any record had one."""
    consents: list[Any] = []
    opt_outs: list[Any] = []
    merged_from: list[Any] = []
    for doc in docs:
        for value in [*doc.get("consents", []), doc.get("consent")]:
            if value and value not in consents:
                consents.append(value)
        for value in [*doc.get("opt_outs", []), doc.get("opted_out")]:
            if value and value not in opt_outs:
                opt_outs.append(value)
        for value in [
            *doc.get("merged_from", []),
            {"_id": doc.get("_id"), "phone": doc.get("phone")},
        ]:
            if value not in merged_from:
                merged_from.append(value)
    record: Doc = {"phone": number, "verified": any(d.get("verified") is True for d in docs)}
    extra = {k: v for d in docs for k, v in d.items() if k not in _OWNED}
    record = {**extra, **record}
    if consents:
        record["consent"] = _latest(consents)
        record["consents"] = consents
    if opt_outs:
        record["opted_out"] = _latest(opt_outs)
        record["opt_outs"] = opt_outs
    record["merged_from"] = merged_from
    return record


_OWNED = frozenset({"_id", "phone", "verified", "consent", "consents", "opted_out", "opt_outs",
                    "merged_from"})  # fmt: skip
