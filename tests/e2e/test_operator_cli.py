"""What an operator meets in the first hour: warnings, revoking a sender, one number's history,
opt-out evidence, cancelled campaigns and output into pipes, as a user types the commands."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from pymongo.database import Database

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import Cli

SOURCE, OTHER_SOURCE = "12065550100", "12065550109"
PEOPLE = ["12065550101", "12065550102", "12065550103"]


def _ok(result: Any) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return str(result.stdout)


def test_an_unknown_environment_name_gets_one_warning_line_naming_it(cli: Cli) -> None:
    cli.env["SMS_OUTBOX_FLOWRUOTE__BASE_URL"] = "http://127.0.0.1:9"
    result = cli("senders", "list")
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert "warning" in line and "SMS_OUTBOX_FLOWRUOTE__BASE_URL" in line


def test_one_off_commands_print_their_result_and_no_log_lines(cli: Cli) -> None:
    for args in (
        ("init",),
        ("senders", "grant", "alice", SOURCE),
        ("recipients", "add", PEOPLE[0], "--verified"),
        ("enqueue", "--user", "alice", "--to", PEOPLE[0], "--body", "hi"),
        ("broadcast", "--user", "alice", "--body", "hello"),
    ):
        result = cli(*args)
        assert (result.returncode, result.stderr) == (0, ""), args
    assert "store.send_guard" not in result.stdout


def test_revoking_a_sender_takes_back_its_numbers_and_then_its_key(cli: Cli) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("senders", "grant", "alice", OTHER_SOURCE))
    _ok(cli("recipients", "add", PEOPLE[0], "--verified"))
    key = cli.cwd / "keys" / "users" / "alice.key"
    assert key.exists()

    assert "no longer send from 12065550109" in _ok(
        cli("senders", "revoke", "alice", "+1 206 555 0109")
    )
    assert json.loads(_ok(cli("senders", "list", "--json"))) == [
        {"user": "alice", "source": SOURCE}
    ]
    assert key.exists()  # alice still sends from her other number

    out = _ok(cli("senders", "revoke", "alice"))
    assert "no longer send from 12065550100" in out and "signing key" in out
    assert not key.exists() and json.loads(_ok(cli("senders", "list", "--json"))) == []
    refused = cli("enqueue", "--user", "alice", "--to", PEOPLE[0], "--body", "hi")
    assert refused.returncode == 2
    assert cli("senders", "revoke", "alice").returncode == 1  # nothing left to revoke


def test_opt_outs_show_their_evidence_and_outlive_a_new_verified_add(cli: Cli) -> None:
    _ok(cli("recipients", "add", *PEOPLE, "--verified"))
    _ok(cli("recipients", "opt-out", PEOPLE[1], "--reason", "replied STOP to bob"))

    lines = dict(line.split("\t", 1) for line in _ok(cli("recipients", "list")).splitlines())
    assert lines[PEOPLE[0]] == "verified"
    assert lines[PEOPLE[1]].startswith("opted out (replied STOP to bob at 20")

    again = _ok(cli("recipients", "add", PEOPLE[1], "--verified"))
    assert "opted out" in again and "\tverified" not in again
    assert "opted out" in _ok(cli("recipients", "list"))


def test_recipients_show_gives_a_number_s_consent_history_and_its_messages(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", PEOPLE[0], "--verified"))
    sent = _ok(cli("enqueue", "--user", "alice", "--to", PEOPLE[0], "--body", "hi")).strip()
    _ok(cli("run", "--until-idle"))
    _ok(cli("recipients", "opt-out", PEOPLE[0], "--reason", "asked by phone"))

    text = _ok(cli("recipients", "show", "(206) 555-0101"))
    assert text.splitlines()[0].startswith(f"{PEOPLE[0]}\topted out (asked by phone")
    assert re.search(r"consent\s+.*source=cli", text), text
    assert re.search(r"opt_out\s+.*reason=asked by phone", text), text
    assert "sent" in text and sent in text
    shown = json.loads(_ok(cli("recipients", "show", PEOPLE[0], "--json")))
    assert [m["_id"] for m in shown["messages"]] == [sent]
    assert [e["event"] for e in shown["history"]] == ["consent", "opt_out"]
    unknown = cli("recipients", "show", "2065550188")
    assert unknown.returncode == 1 and "never texted" in unknown.stdout


def test_a_broadcast_dry_run_says_how_many_people_it_would_text(
    cli: Cli, db: Database[dict[str, Any]]
) -> None:
    _ok(cli("recipients", "add", *PEOPLE, "--verified"))
    _ok(cli("recipients", "add", "12065550104"))  # no consent
    _ok(cli("recipients", "opt-out", PEOPLE[2]))
    out = _ok(cli("broadcast", "--user", "alice", "--body", "Pool opens at 9", "--dry-run"))
    assert "to 2 people" in out and "nothing was queued" in out
    shown = json.loads(_ok(cli("broadcast", "--user", "a", "--body", "x", "--dry-run", "--json")))
    assert shown["recipients"] == 2
    assert db["outbox"].count_documents({}) == 0


def test_cancelled_campaigns_show_as_cancelled_also_before_their_fan_out(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", *PEOPLE, "--verified"))
    never = _ok(cli("broadcast", "--user", "alice", "--body", "one")).strip()
    _ok(cli("cancel", never))  # before any daemon saw it
    fanned = _ok(cli("broadcast", "--user", "alice", "--body", "two")).strip()
    simulator.fail_next(503, count=3)  # its messages wait to be retried after a backoff
    _ok(cli("run", "--until-idle"))
    assert json.loads(_ok(cli("status", "--campaign", fanned, "--json")))["states"] == {"queued": 3}
    _ok(cli("cancel", fanned))

    rows = {r["campaign"]: r for r in json.loads(_ok(cli("campaigns", "--json")))}
    assert (rows[never]["ended"], rows[never]["request"]) == ("cancelled", "cancelled")
    assert (rows[fanned]["ended"], rows[fanned]["cancelled"]) == ("cancelled", 3)
    table = _ok(cli("campaigns"))
    assert table.count("cancelled") >= 2 and "100%" not in table
    watched = _ok(cli("status", "--campaign", fanned, "--watch", "--interval", "0.2"))
    assert "cancelled" in watched.splitlines()[0]  # off a terminal: a plain line a refresh
    assert watched.splitlines()[-1] == f"campaign {fanned} is cancelled: 3 messages"
    assert simulator.messages() == []


def test_status_watch_prints_lines_when_not_on_a_terminal(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", *PEOPLE, "--verified"))
    campaign = _ok(cli("broadcast", "--user", "alice", "--body", "hi")).strip()
    _ok(cli("run", "--until-idle"))
    out = _ok(cli("status", "--campaign", campaign, "--watch"))
    assert "100.0%" in out and "sent 3" in out and out.endswith("is done: 3 messages\n")


def test_json_into_a_pipe_that_closes_early_ends_quietly(
    cli: Cli, db: Database[dict[str, Any]], tmp_path: Path
) -> None:
    # More than a pipe's buffer, so the writer meets the closed pipe.
    db["users"].insert_many(
        [{"phone": f"1206555{n:04d}", "verified": True, "note": "x" * 100} for n in range(2000)]
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{' '.join(cli.argv0)} recipients list --json | head -1"],
        env=cli.env, cwd=cli.cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.stdout.strip() == "["
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
