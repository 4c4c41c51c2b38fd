"""One person is one phone number: however `users` spells it, a broadcast texts each person once,
an opt-out on any record wins, and the operator can see and merge the duplicates. Shared by
tests/unit/test_one_person.py (mongomock) and tests/integration/test_identity_on_server.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from bson import ObjectId
from pymongo.database import Database

from jobs.dispatch import fanout
from jobs.dispatch.dispatcher import Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from jobs.rules import identity
from tests.unit.fakes import RECIPIENT, RECIPIENT_2, FakeProvider

PERSON = "12065550188"
THREE_WAYS = ["12065550188", "+12065550188", "2065550188"]


def _submit(store: OutboxStore, **fields: Any) -> Any:
    doc = {"user": "alice", "to": PERSON, "body": "hello", **fields}
    return store.outbox.insert_one({k: v for k, v in doc.items() if v is not None}).inserted_id


def _broadcast(store: OutboxStore) -> Any:
    return _submit(store, to=None, audience="verified", body="news")


def _run_until_idle(dispatcher: Dispatcher) -> None:
    for _ in range(20):
        if dispatcher.run_once().idle:
            return
    raise AssertionError("the dispatcher never went idle")


def _code(store: OutboxStore, doc_id: Any) -> str:
    found = store.status.find_one({"_id": doc_id})
    assert found is not None
    return str(found["error"]["code"])


class IdentitySuite:
    """One person is one phone number; each suite brings its own `db`."""

    def test_a_person_stored_three_ways_gets_one_text_from_a_broadcast(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, db: Database[Doc]
    ) -> None:
        db["users"].insert_many([{"phone": p, "verified": True} for p in THREE_WAYS])
        campaign = _broadcast(store)

        _run_until_idle(dispatcher)

        assert sorted(provider.recipients()) == sorted([PERSON, RECIPIENT, RECIPIENT_2])
        parent = store.status.find_one({"_id": campaign})
        assert parent is not None and parent["recipients"] == 3
        assert store.find(f"{campaign}:{PERSON}") is not None

    def test_duplicate_spellings_in_later_chunks_and_after_a_restart_are_one_person(
        self,
        monkeypatch: pytest.MonkeyPatch,
        dispatcher: Dispatcher,
        store: OutboxStore,
        provider: FakeProvider,
        db: Database[Doc],
    ) -> None:
        # Sorted as stored, "+1…", "1…" and ten digits fall into different chunks of one.
        monkeypatch.setattr(fanout, "CHUNK", 1)
        db["users"].insert_many([{"phone": p, "verified": True} for p in THREE_WAYS])
        _broadcast(store)

        _run_until_idle(dispatcher)

        assert sorted(provider.recipients()) == sorted([PERSON, RECIPIENT, RECIPIENT_2])

    def test_an_opt_out_on_another_spelling_wins_for_direct_messages_and_broadcasts(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, db: Database[Doc]
    ) -> None:
        db["users"].insert_many(
            [
                {"phone": "12065550188", "verified": True},
                {"phone": "2065550188", "verified": False, "opted_out": {"reason": "STOP"}},
            ]
        )
        direct = _submit(store)
        campaign = _broadcast(store)

        _run_until_idle(dispatcher)

        assert PERSON not in provider.recipients()
        assert _code(store, direct) == "opted_out"
        assert _code(store, f"{campaign}:{PERSON}") == "opted_out"

    def test_a_legacy_true_opt_out_on_any_record_wins(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, db: Database[Doc]
    ) -> None:
        db["users"].insert_many(
            [
                {"phone": "+12065550188", "verified": True},
                {"phone": "2065550188", "opted_out": True},
            ]
        )
        direct = _submit(store)

        _run_until_idle(dispatcher)

        assert provider.recipients() == []
        assert _code(store, direct) == "opted_out"

    def test_consent_on_any_spelling_is_consent(
        self, dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, db: Database[Doc]
    ) -> None:
        db["users"].insert_many(
            [
                {"phone": "+12065550188", "verified": True},
                {"phone": "2065550188", "verified": False},
            ]
        )
        _submit(store)

        _run_until_idle(dispatcher)

        assert provider.recipients() == [PERSON]

    def test_pages_of_verified_records_cover_every_kind_of_id_once(
        self, directory: Directory, db: Database[Doc]
    ) -> None:
        # Legacy databases key records however their writers chose; a range on `_id` reads one
        # type at a time, so each page goes on to the next type when one runs out.
        ids: list[Any] = [7, 2.5, "legacy-b", "legacy-a", {"k": 1}, ObjectId(), ObjectId(), True,
                          datetime(2020, 1, 1, tzinfo=UTC), None]  # fmt: skip
        phones = [f"1206555{i:04d}" for i in range(len(ids))]
        db["users"].insert_many(
            [{"_id": i, "phone": p, "verified": True} for i, p in zip(ids, phones, strict=True)]
        )
        db["users"].insert_one({"phone": "12065559999", "verified": False})

        read: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            numbers, cursor = directory.verified_page(cursor, 3)
            if cursor is None:
                break
            read += numbers
            pages += 1

        assert sorted(read) == sorted([*phones, RECIPIENT, RECIPIENT_2]) and pages >= 4

    def test_a_page_cursor_that_does_not_parse_starts_over(self, directory: Directory) -> None:
        everyone, _ = directory.verified_page(None, 100)

        for cursor in ('{"$oid": "zz"}', "[1", '{"$numberDecimal": "q"}', '{"$date": "x"}'):
            assert directory.verified_page(cursor, 100)[0] == everyone

    def test_a_phone_that_is_not_text_is_logged_not_silently_skipped(
        self, directory: Directory, db: Database[Doc]
    ) -> None:
        db["users"].insert_one({"phone": 12065550188, "verified": True})

        with structlog.testing.capture_logs() as logs:
            numbers, _ = directory.verified_page(None, 100)

        assert sorted(numbers) == sorted([RECIPIENT, RECIPIENT_2])
        assert [e["event"] for e in logs] == ["recipient.invalid_phone"]
        assert logs[0]["phone_type"] in ("int", "Int64")
        [bad] = directory.audit().invalid
        assert "must be text" in bad[1]

    def test_recipients_list_shows_one_line_per_person(
        self, directory: Directory, db: Database[Doc]
    ) -> None:
        db["users"].insert_many(
            [
                {"phone": "12065550188", "verified": True},
                {"phone": "+12065550188", "opted_out": {"reason": "STOP"}},
            ]
        )

        people = {row["phone"]: row for row in directory.recipients()}

        assert people[PERSON]["opted_out"] == {"reason": "STOP"}
        assert people[PERSON]["records"] == 2
        assert sorted(people) == sorted([PERSON, RECIPIENT, RECIPIENT_2, "13125550123"])

    def test_check_reports_and_fix_merges_keeping_every_consent_and_opt_out(
        self, directory: Directory, db: Database[Doc], clock: ManualClock
    ) -> None:
        db["users"].insert_many(
            [
                {"phone": "+12065550188", "verified": True,
                 "consent": {"at": clock.now(), "source": "web"}},
                {"phone": "(206) 555-0188", "opted_out": {"at": clock.now(), "reason": "STOP"}},
                {"phone": "2065550177", "verified": True, "name": "Ann"},
                {"phone": ["12065550166"], "verified": True},
                {"phone": "206555CALL", "verified": True},
            ]
        )  # fmt: skip

        found = directory.audit()

        assert found.duplicates() == {PERSON: ["+12065550188", "(206) 555-0188"]}
        assert found.conflicts() == [PERSON]
        assert found.misspelled()["12065550177"] == ["2065550177"]
        assert [why for _, why in found.invalid] == [
            "phone ['12065550166']: phone number must be text, not list",
            "phone '206555CALL': '206555CALL' contains letters; write the number in digits"
            " (letters are never converted)",
        ]
        assert directory.fix(found) == 2

        [merged] = db["users"].find({"phone": {"$in": identity.spellings(PERSON)}})
        assert merged["phone"] == PERSON
        assert merged["opted_out"]["reason"] == "STOP"
        assert [c["source"] for c in merged["consents"]] == ["web"]
        assert [o["reason"] for o in merged["opt_outs"]] == ["STOP"]
        assert {m["phone"] for m in merged["merged_from"]} == {"+12065550188", "(206) 555-0188"}
        assert directory.recipient(PERSON) is not None
        assert (directory.recipient(PERSON) or {}).get("opted_out")
        ann = db["users"].find_one({"phone": "12065550177"})
        assert ann is not None and (ann["name"], ann["verified"]) == ("Ann", True)
        again = directory.audit()
        assert (again.to_fix(), len(again.invalid)) == ({}, 2)

    def test_fix_is_safe_to_run_twice(self, directory: Directory, db: Database[Doc]) -> None:
        db["users"].insert_many([{"phone": p, "verified": True} for p in THREE_WAYS])
        assert directory.fix(directory.audit()) == 1
        assert directory.fix(directory.audit()) == 0
        assert db["users"].count_documents({"phone": PERSON}) == 1

    def test_a_record_in_another_layout_is_not_consent_until_fixed_and_check_lists_it(self,
        dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, directory: Directory,
        db: Database[Doc],
    ) -> None:  # fmt: skip
        db["users"].insert_one({"phone": "(206) 555-0188", "verified": True})
        first = _submit(store)
        _run_until_idle(dispatcher)

        assert _code(store, first) == "not_verified"
        assert directory.audit().misspelled() == {PERSON: ["(206) 555-0188"]}
        [listed] = [r for r in directory.recipients() if r["phone"] == PERSON]
        assert listed["unmatched"] == ["(206) 555-0188"]
        directory.fix(directory.audit())
        _submit(store, body="again")
        _run_until_idle(dispatcher)
        assert provider.recipients() == [PERSON]
