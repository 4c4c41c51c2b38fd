"""The CLI as a user types it, against the real database server and the local Flowroute."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from jobs.simulator.server import FlowrouteSimulator
from tests.conftest import ACCESS_KEY, SECRET_KEY, Cli
from tests.processes import stop
from tests.servers.mongo_server import MongoServer

SOURCE = "12065550100"
FRIENDS = ["12065550101", "12065550102", "(206) 555-0103"]
ANSWER_DELAY = 3.0


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _ok(result: Any) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return str(result.stdout)


def test_a_broadcast_reaches_every_verified_recipient_once(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", "+1 206 555 0100"))
    _ok(cli("recipients", "add", *FRIENDS, "--verified"))
    _ok(cli("recipients", "add", "12065550104"))
    campaign = _ok(cli("broadcast", "--user", "alice", "--body", "Pool opens at 9")).strip()

    _ok(cli("run", "--until-idle"))

    summary = _json(cli("status", "--campaign", campaign, "--json"))
    assert summary["states"] == {"sent": 3}
    assert summary["request"]["state"] == "expanded"
    sent = sorted(m.to for m in simulator.messages())
    assert sent == ["12065550101", "12065550102", "12065550103"]
    assert {m.from_ for m in simulator.messages()} == {SOURCE}
    text = _ok(cli("status", "--campaign", campaign))
    assert "sent" in text and "3" in text


def test_enqueue_with_the_same_key_twice_is_one_message(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", FRIENDS[0], "--verified"))
    args = ("enqueue", "--user", "alice", "--to", FRIENDS[0], "--body", "hi", "--key", "k-1")
    first = _ok(cli(*args)).strip()
    again = cli(*args)
    assert again.stdout.strip() == first
    assert "already queued" in again.stderr

    _ok(cli("run", "--until-idle"))

    status = _json(cli("status", first, "--json"))
    assert status["state"] == "sent"
    assert status["provider_id"].startswith("mdr2-")
    assert status["attempts"] == 1
    assert len(simulator.messages()) == 1


def test_unauthorised_and_unconsented_messages_are_refused_at_enqueue(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", FRIENDS[0]))
    _ok(cli("recipients", "add", FRIENDS[1], "--verified"))
    intruder = cli("enqueue", "--user", "mallory", "--to", FRIENDS[1], "--body", "x")
    assert intruder.returncode == 2
    assert "may not send" in intruder.stderr
    args = ("enqueue", "--user", "alice", "--body", "x")
    other_number = cli(*args, "--to", FRIENDS[1], "--from", "12065550199")
    assert other_number.returncode == 2
    assert "was not granted the number 12065550199" in other_number.stderr
    no_consent = cli(*args, "--to", FRIENDS[0])
    assert no_consent.returncode == 2
    assert "has not verified consent" in no_consent.stderr
    wide = cli("broadcast", "--user", "alice", "--body", "x", "--from", "12065550199")
    assert wide.returncode == 2

    _ok(cli("run", "--until-idle"))

    assert _json(cli("recipients", "list", "--json"))[0]["verified"] is False
    assert simulator.messages() == []


def test_reusing_a_key_with_another_body_is_a_conflict(cli: Cli) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", FRIENDS[0], "--verified"))
    args = ("enqueue", "--user", "alice", "--to", FRIENDS[0], "--key", "k-9")
    first = _ok(cli(*args, "--body", "Your table is ready")).strip()
    changed = cli(*args, "--body", "Your table is cancelled")
    assert changed.returncode == 2
    assert f"key 'k-9' is already message {first}, with a different body" in changed.stderr
    assert _ok(cli(*args, "--body", "Your table is ready")).strip() == first


def test_invalid_number_is_refused_with_the_reason(cli: Cli) -> None:
    result = cli("enqueue", "--user", "alice", "--to", "+44 20 7946 0958", "--body", "hi")
    assert result.returncode == 2
    assert "outside North America" in result.stderr
    added = cli("recipients", "add", "555")
    assert added.returncode == 2
    assert "too short" in added.stderr


def test_invalid_setting_stops_start_up_with_one_line_naming_it(cli: Cli) -> None:
    cli.env["SMS_OUTBOX_DISPATCH__BATCH_SIZE"] = "zero"
    result = cli("run", "--until-idle")
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "dispatch.batch_size" in lines[0]


def test_missing_flowroute_key_is_named(cli: Cli) -> None:
    del cli.env["SMS_OUTBOX_FLOWROUTE__SECRET_KEY"]
    result = cli("run", "--until-idle")
    assert result.returncode == 78
    assert "flowroute.secret_key" in result.stderr


def test_config_file_is_read_and_environment_overrides_it(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "sms.toml"
    config.write_text('[mongodb]\ndatabase = "from_file"\n[dispatch]\nbatch_size = 3\n')
    database = cli.env.pop("SMS_OUTBOX_MONGODB__DATABASE")
    _ok(cli("--config", str(config), "senders", "grant", "alice", SOURCE))
    cli.env["SMS_OUTBOX_MONGODB__DATABASE"] = database
    assert _json(cli("senders", "list", "--json")) == []
    cli.env.pop("SMS_OUTBOX_MONGODB__DATABASE")
    listed = _json(cli("--config", str(config), "senders", "list", "--json"))
    assert listed == [{"user": "alice", "source": SOURCE}]


def test_status_of_an_unknown_message_exits_1(cli: Cli) -> None:
    result = cli("status", "0123456789abcdef01234567")
    assert result.returncode == 1
    assert "no message" in result.stderr


def test_recipients_import_reports_refused_lines_and_still_exits_0(
    cli: Cli, tmp_path: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("phone,verified\n12065550101,yes\nnot-a-number,yes\n2065550102,no\n")
    result = cli("recipients", "import", str(csv_file))
    assert result.returncode == 0, result.stderr
    assert "line 3" in result.stderr
    assert "new 2, already present 0, spellings merged 0, refused 1" in result.stdout
    people = {r["phone"]: r["verified"] for r in _json(cli("recipients", "list", "--json"))}
    assert people == {"12065550101": True, "12065550102": False}


def test_sigterm_finishes_the_send_in_flight_and_releases_the_rest(
    cli: Cli, simulator: FlowrouteSimulator, db: Database[dict[str, Any]]
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    numbers = [f"1206555{n:04d}" for n in range(110, 120)]
    _ok(cli("recipients", "add", *numbers, "--verified"))
    for number in numbers:
        _ok(cli("enqueue", "--user", "alice", "--to", number, "--body", "slow"))
    cli.env["SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND"] = "2"
    # Flowroute takes the first message at once and answers it only ANSWER_DELAY seconds later.
    simulator.delay_next(ANSWER_DELAY)
    daemon = cli.popen("run")
    deadline = time.monotonic() + 60
    while not simulator.messages() and time.monotonic() < deadline:
        time.sleep(0.02)
    [arrived] = simulator.attempt_times()
    daemon.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    # A second one (Ctrl-C pressed twice, a supervisor that asks again) changes nothing.
    time.sleep(0.3)
    daemon.send_signal(signal.SIGTERM)
    _, stderr = stop(daemon, timeout=30)

    assert signalled - arrived < ANSWER_DELAY, "SIGTERM came while the request was open"
    assert time.monotonic() - arrived >= ANSWER_DELAY, "the daemon waited for the answer"
    assert daemon.returncode == 0, stderr
    assert "daemon.stopped" in stderr and "daemon.still_stopping" in stderr
    states = {doc["_id"]: doc for doc in db["outbox"].find()}
    sent = [d for d in states.values() if d["state"] == "sent"]
    queued = [d for d in states.values() if d["state"] == "queued"]
    assert [d["to"] for d in sent] == [m.to for m in simulator.messages()]
    assert len(sent) == 1 and sent[0]["provider_id"] == simulator.messages()[0].id
    assert len(queued) == len(numbers) - 1
    assert all(d["attempts"] == 0 and not d.get("claim_token") for d in queued)


def test_python_dash_m_scheduler_runs_the_daemon(cli: Cli, simulator: FlowrouteSimulator) -> None:

    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", FRIENDS[0], "--verified"))
    _ok(cli("enqueue", "--user", "alice", "--to", FRIENDS[0], "--body", "hi"))
    cli.argv0 = [sys.executable, "-m", "scheduler"]
    _ok(cli("--until-idle"))
    assert len(simulator.messages()) == 1


def test_demo_runs_without_a_server_and_says_it_is_a_demo(cli: Cli) -> None:
    for key in [k for k in cli.env if k.startswith("SMS_OUTBOX_")]:
        del cli.env[key]
    out = _ok(cli("demo"))
    assert "DEMO" in out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [row[1] for row in rows].count("sent") == 5
    assert "signature" in out and "opted_out" in out and "not_verified" in out


def test_opt_out_on_the_cli_stops_every_sender(cli: Cli, simulator: FlowrouteSimulator) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("senders", "grant", "bob", "12065550109"))
    _ok(cli("recipients", "add", FRIENDS[0], "--verified"))
    ids = [
        _ok(cli("enqueue", "--user", user, "--to", FRIENDS[0], "--body", "hi")).strip()
        for user in ("alice", "bob")
    ]
    _ok(cli("recipients", "opt-out", FRIENDS[0], "--reason", "replied STOP to bob"))
    refused = cli("enqueue", "--user", "alice", "--to", FRIENDS[0], "--body", "again")
    assert (refused.returncode, "has opted out" in refused.stderr) == (2, True)

    _ok(cli("run", "--until-idle"))

    assert [_json(cli("status", i, "--json"))["error"]["code"] for i in ids] == ["opted_out"] * 2
    assert simulator.messages() == []
    listed = _json(cli("recipients", "list", "--json"))
    assert listed[0]["opted_out"]["reason"] == "replied STOP to bob"


def test_dry_run_shows_segments_and_queues_nothing(cli: Cli, db: Database[dict[str, Any]]) -> None:
    body = "\u201cCurly\u201d quotes \u2014 and " + "x" * 150
    shown = _json(
        cli("enqueue", "--user", "a", "--to", FRIENDS[0], "--body", body, "--dry-run", "--json")
    )
    assert (shown["segments"], shown["encoding"]) == (2, "ascii")
    assert shown["text"].startswith('"Curly" quotes - and')
    accents = _json(cli("broadcast", "--user", "a", "--body", "\u00e9" * 71, "--dry-run", "--json"))
    assert (accents["segments"], accents["encoding"]) == (2, "ucs2")
    assert db["outbox"].count_documents({}) == 0


def test_status_of_a_campaign_counts_by_reason(cli: Cli, simulator: FlowrouteSimulator) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", *FRIENDS, "--verified"))
    _ok(cli("recipients", "opt-out", FRIENDS[1]))
    campaign = _ok(cli("broadcast", "--user", "alice", "--body", "hello")).strip()

    _ok(cli("run", "--until-idle"))

    summary = _json(cli("status", "--campaign", campaign, "--json"))
    assert summary["states"] == {"rejected": 1, "sent": 2}
    assert summary["reasons"] == {"opted_out": 1}
    assert "opted_out" in _ok(cli("status", "--campaign", campaign))


def test_init_is_idempotent_and_roles_need_a_server_that_has_them(
    cli: Cli, mongo_server: MongoServer
) -> None:
    _ok(cli("init"))
    _ok(cli("init"))
    result = cli("init", "--roles")
    if mongo_server.kind in ("ferretdb", "ferretdb2"):
        # FerretDB 1.x and 2.5 have no role commands: the CLI says so instead of pretending.
        assert result.returncode == 69
        assert "refused to create roles" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert "smsOutboxProducer" in result.stdout
    again = cli("init", "--roles")
    assert again.returncode == 0
    assert "updated smsOutboxDaemon" in again.stdout


def test_daemon_paced_at_five_per_second_is_never_refused_by_flowroute(
    cli: Cli, db: Database[dict[str, Any]], tmp_path: Path
) -> None:
    with FlowrouteSimulator(ACCESS_KEY, SECRET_KEY, rate_per_second=5) as limited:
        cli.env.update(
            SMS_OUTBOX_FLOWROUTE__BASE_URL=limited.url,
            SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND="5",
            # The margin tests/integration/test_fleet_pacing.py uses on this loaded machine: the
            # default 25 ms is for a network path, not for a local run that may stall.
            SMS_OUTBOX_DISPATCH__PACING_MARGIN_MS="100",
        )
        _ok(cli("senders", "grant", "alice", SOURCE))
        numbers = [f"1206555{n:04d}" for n in range(120, 136)]
        _ok(cli("recipients", "add", *numbers, "--verified"))
        campaign = _ok(cli("broadcast", "--user", "alice", "--body", "paced")).strip()

        _ok(cli("run", "--until-idle"))

        assert _json(cli("status", "--campaign", campaign, "--json"))["states"] == {"sent": 16}
        assert limited.attempts() == 16, "Flowroute refused some attempts (429)"
        times = limited.attempt_times()
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert busiest <= 5


def test_turning_signatures_off_warns_at_every_start(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    cli.env["SMS_OUTBOX_SECURITY__REQUIRE_SIGNATURES"] = "false"
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", FRIENDS[0], "--verified"))
    _ok(cli("enqueue", "--user", "alice", "--to", FRIENDS[0], "--body", "unsigned"))
    for _ in range(2):
        result = cli("run", "--until-idle")
        assert result.returncode == 0
        assert "security.signatures_off" in result.stderr
    assert len(simulator.messages()) == 1


def test_import_refuses_numbers_with_letters_instead_of_converting_them(
    cli: Cli, tmp_path: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("206555CALL,yes\n206555OlOl,yes\n2065550101,yes\n")
    result = cli("recipients", "import", str(csv_file), "--verified")
    assert result.returncode == 0  # the file was read; its refused lines are reported
    assert "line 1" in result.stderr and "line 2" in result.stderr
    assert "contains letters" in result.stderr
    assert [r["phone"] for r in _json(cli("recipients", "list", "--json"))] == ["12065550101"]


def test_recipients_check_reports_legacy_spellings_and_fix_merges_them(
    cli: Cli, db: Database[dict[str, Any]], simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    db["users"].insert_many(
        [
            {"phone": "12065550101", "verified": True},
            {"phone": "+12065550101", "verified": True},
            {"phone": "2065550101", "opted_out": {"reason": "STOP"}},
            {"phone": 12065550102, "verified": True},
        ]
    )
    report = cli("recipients", "check", "--json")
    assert report.returncode == 1
    found = json.loads(report.stdout)
    assert found["conflicts"] == ["12065550101"]
    assert len(found["duplicates"]["12065550101"]) == 3
    assert "must be text" in found["invalid"][0]["why"]
    listed = _json(cli("recipients", "list", "--json"))
    assert listed[0]["phone"] == "12065550101" and listed[0]["opted_out"]
    _ok(cli("broadcast", "--user", "alice", "--body", "hello"))
    _ok(cli("run", "--until-idle"))
    assert simulator.messages() == []

    fixed = cli("recipients", "check", "--fix")
    assert fixed.returncode == 1  # the record whose phone is a number still needs a person
    assert "merged the records of 1 numbers" in fixed.stdout
    assert db["users"].count_documents({}) == 2
    merged = db["users"].find_one({"phone": "12065550101"})
    assert merged is not None and merged["opted_out"] == {"reason": "STOP"}
    assert len(merged["merged_from"]) == 3


def test_operators_cancel_a_campaign_retry_failures_and_see_why_a_message_waits(
    cli: Cli, simulator: FlowrouteSimulator
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE))
    _ok(cli("recipients", "add", *FRIENDS, "--verified"))
    campaign = _ok(cli("broadcast", "--user", "alice", "--body", "wrong date")).strip()
    later = _ok(
        cli("enqueue", "--user", "alice", "--to", FRIENDS[0], "--body", "later",
            "--send-at", "2099-01-01T12:00:00+00:00")
    ).strip()  # fmt: skip
    cancelled = _ok(cli("cancel", campaign, "--by", "ops-ann"))
    assert f"cancelled campaign {campaign}" in cancelled
    again = cli("cancel", campaign)
    assert again.returncode == 1 and "nothing left to cancel" in again.stderr
    assert cli("cancel", "0123456789abcdef01234567").returncode == 1

    simulator.fail_next(400, count=1)
    failing = _ok(cli("enqueue", "--user", "alice", "--to", FRIENDS[1], "--body", "hi")).strip()
    _ok(cli("run", "--until-idle"))

    assert simulator.messages() == []
    request = _json(cli("status", campaign, "--json"))
    assert (request["state"], request["cancelled"]["by"]) == ("cancelled", "ops-ann")
    waiting = _json(cli("status", later, "--json"))
    assert waiting["state"] == "queued"
    assert waiting["waiting"].startswith("scheduled (send_at); due 2099-01-01T12:00:00")
    assert "waiting" in _ok(cli("status", later))
    assert _json(cli("status", failing, "--json"))["state"] == "failed"

    retried = _json(cli("retry", "--reason", "provider", "--by", "ops-ann", "--json"))
    assert retried == {"retried": [failing]}
    assert cli("retry").returncode == 2
    _ok(cli("run", "--until-idle"))

    final = _json(cli("status", failing, "--json"))
    assert final["state"] == "sent"
    assert [(h["state"], h["retried_by"]) for h in final["history"]] == [("failed", "ops-ann")]
    assert "earlier" in _ok(cli("status", failing))
    assert [m.to for m in simulator.messages()] == ["12065550102"]


def test_a_grant_s_max_priority_lowers_what_its_user_asks_for(
    cli: Cli, simulator: FlowrouteSimulator, db: Database[dict[str, Any]]
) -> None:
    _ok(cli("senders", "grant", "alice", SOURCE, "--max-priority", "20"))
    refused = cli("senders", "grant", "alice", SOURCE, "--max-priority", "101")
    assert refused.returncode == 2 and "max_priority" in refused.stderr
    assert [g.get("max_priority") for g in _json(cli("senders", "list", "--json"))] == [20]
    _ok(cli("recipients", "add", FRIENDS[0], "--verified"))
    args = ("--user", "alice", "--to", FRIENDS[0], "--body", "urgent", "--priority", "90")
    message = _ok(cli("enqueue", *args)).strip()

    _ok(cli("run", "--until-idle"))

    doc = db["outbox"].find_one({"_id": ObjectId(message)}) or {}
    assert (doc["state"], doc["priority"], doc["priority_requested"]) == ("sent", 20, 90)
    assert [m.to for m in simulator.messages()] == [FRIENDS[0]]
