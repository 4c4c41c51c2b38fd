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


def opt_out_key(value: Any) -> Doc:
    """What names one opt-out: a consent given again records the key of the opt-out it ends, so
    any later opt-out (a new key) is in force again, whatever the clocks say."""
    if not isinstance(value, Mapping):
        return {"legacy": value}
    return {name: value.get(name) for name in ("at", "reason", "inbound_id")}


def active_opt_out(doc: Mapping[str, Any]) -> Any:
    """The record's opt-out if it is still in force (the latest event), else None. Opt-outs are
    never erased: one that a later START or operator ended is kept, with `opted_in_again`
    naming it."""
    opted_out = doc.get("opted_out")
    if not opted_out:
        return None
    again = doc.get("opted_in_again")
    if isinstance(again, Mapping) and again.get("ends") == opt_out_key(opted_out):
        return None
    return opted_out


def view(number: str, records: Iterable[Mapping[str, Any]]) -> Doc | None:
    """What every record of `number` says together, or None when there is none.

    Consent needs a verified record; an opt-out in force on any record wins over every verified
    one. `opted_out` is shown only while in force; `opted_in_again` is the latest consent given
    again after an opt-out.
    """
    docs = list(records)
    if not docs:
        return None
    opt_outs = [active_opt_out(doc) for doc in docs if active_opt_out(doc)]
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
    again = _latest(doc.get("opted_in_again") for doc in docs)
    if again is not None:
        merged["opted_in_again"] = again
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
            if any(active_opt_out(d) for d in docs)
            and any(d.get("verified") is True and not active_opt_out(d) for d in docs)
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
    `consents`, every opt-out in `opt_outs`, every consent given again in `opt_ins`, and the
    phones merged in `merged_from`. The opt-out still wins: an opt-out in force on any record is
    in force on the merged one."""
    consents: list[Any] = []
    opt_outs: list[Any] = []
    opt_ins: list[Any] = []
    merged_from: list[Any] = []
    for doc in docs:
        for value in [*doc.get("consents", []), doc.get("consent")]:
            if value and value not in consents:
                consents.append(value)
        for value in [*doc.get("opt_outs", []), doc.get("opted_out")]:
            if value and value not in opt_outs:
                opt_outs.append(value)
        for value in [*doc.get("opt_ins", []), doc.get("opted_in_again")]:
            if value and value not in opt_ins:
                opt_ins.append(value)
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
    in_force = [active_opt_out(d) for d in docs if active_opt_out(d)]
    if in_force:
        record["opted_out"] = _latest(in_force)
    elif opt_outs:
        # Every opt-out was ended: keep the latest one with the consent that ended it.
        ended = max((d for d in docs if d.get("opted_out")), key=lambda d: _when(d["opted_out"]))
        record["opted_out"] = ended["opted_out"]
        record["opted_in_again"] = ended.get("opted_in_again")
    if opt_outs:
        record["opt_outs"] = opt_outs
    if opt_ins:
        record["opt_ins"] = opt_ins
    record["merged_from"] = merged_from
    return record


_OWNED = frozenset({"_id", "phone", "verified", "consent", "consents", "opted_out", "opt_outs",
                    "opted_in_again", "opt_ins", "merged_from"})  # fmt: skip
