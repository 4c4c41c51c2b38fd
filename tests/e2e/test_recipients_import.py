"""`recipients import` as a user types it: a big mixed file, a summary, refusals, and indexes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pymongo.database import Database

from jobs.mongo import importer
from tests.conftest import Cli

REFUSED = 25


def write_mixed(path: Path) -> None:
    """Ten people in three spellings each, one already stored, and REFUSED bad lines."""
    lines = ["phone,verified"]
    for i in range(10):
        number = f"206555{i:04d}"
        lines += [f"1{number},yes", f"+1 ({number[:3]}) {number[3:6]}-{number[6:]},yes", number]
    lines += [f"not a number {i}" for i in range(REFUSED)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_mixed_file_is_summarised_and_refusals_do_not_fail_the_import(
    cli: Cli, db: Database[dict[str, Any]], tmp_path: Path
) -> None:
    db["users"].insert_one({"phone": "+12065550000", "verified": False})
    people = tmp_path / "people.csv"
    write_mixed(people)

    result = cli("recipients", "import", str(people))

    assert result.returncode == 0, result.stderr
    # Person 0 was stored as +1…: its three file spellings and the stored one are one person.
    assert "new 9, already present 1, spellings merged 21, refused 25" in result.stdout
    refused = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [int(line.split()[1].rstrip(":")) for line in refused] == list(range(32, 52))
    assert f"and {REFUSED - importer.SHOWN_REFUSALS} more lines refused" in result.stderr
    listed = json.loads(cli("recipients", "list", "--json").stdout)
    assert len(listed) == 10 and all(person["verified"] for person in listed)
    assert db["users"].count_documents({}) == 10


def test_an_import_into_a_fresh_database_makes_the_indexes_first(
    cli: Cli, db: Database[dict[str, Any]], tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text("12065550101\n", encoding="utf-8")

    assert cli("recipients", "import", str(people)).returncode == 0

    assert "phone" in db["users"].index_information()


def test_a_file_that_cannot_be_read_fails_the_import(cli: Cli, tmp_path: Path) -> None:
    missing = cli("recipients", "import", str(tmp_path / "nowhere.csv"))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 100)
    garbled = cli("recipients", "import", str(binary))

    assert missing.returncode == 66 and "cannot read" in missing.stderr
    assert garbled.returncode == 66 and "cannot read" in garbled.stderr
