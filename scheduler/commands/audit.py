"""`sms-outbox recipients check`: one well-formed record per number, or what is wrong."""

from __future__ import annotations

from typing import Any

from jobs.mongo.directory import Directory
from scheduler.commands.output import EXIT_FAILURE, EXIT_OK, emit


def check_recipients(directory: Directory, *, fix: bool, as_json: bool) -> int:
    """Exit 0 when `users` holds one well-formed record per number (after --fix, if given)."""
    found = directory.audit()
    report: dict[str, Any] = {
        "duplicates": found.duplicates(),
        "misspelled": found.misspelled(),
        "conflicts": found.conflicts(),
        "invalid": [{"record": str(i), "why": why} for i, why in found.invalid],
        "fixed": directory.fix(found) if fix else 0,
    }
    if as_json:
        emit(report, True)
    else:
        for number, stored in report["duplicates"].items():
            print(f"{number}\tstored {len(stored)} times: {', '.join(map(repr, stored))}")
        for number, stored in report["misspelled"].items():
            if number not in report["duplicates"]:
                print(f"{number}\tstored as {', '.join(map(repr, stored))}")
        for number in report["conflicts"]:
            print(f"{number}\topted out on one record, verified on another: the opt-out wins")
        for bad in report["invalid"]:
            print(f"-\trecord {bad['record']}: {bad['why']} (not a recipient; fix it by hand)")
        if fix:
            print(f"merged the records of {report['fixed']} numbers into one each")
        elif found.to_fix():
            print(f"{len(found.to_fix())} numbers to merge: run again with --fix")
        if found.clean:
            print("users holds one well-formed record per number")
    clean = not found.invalid and (fix or not found.to_fix())
    return EXIT_OK if clean else EXIT_FAILURE
