"""The daemon's seal: what it covers, and the in-memory outbox acting only on sealed documents."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.doubles.memory import MemoryOutbox
from jobs.keys import KeyRing, Signatures
from jobs.mongo.directory import Directory
from jobs.rules import seal, signing
from scheduler.settings import Settings
from scheduler.wiring import build_dispatcher
from tests.unit.fakes import RECIPIENT, CountingPacer, FakeProvider

KEY = "daemon-key-for-tests"
DOC: dict[str, Any] = {"_id": ObjectId(), "user": "alice", "to": "13125550199", "body": "hi"}


def test_a_seal_holds_whatever_state_and_bookkeeping_the_daemon_writes_later() -> None:
    sealed = {**DOC, "seal": seal.seal(KEY, DOC, seal.ADMITTED)}
    later = {**sealed, "state": "sent", "attempts": 3, "from": "12065550100", "rev": 9}
    assert seal.sealed(KEY, sealed) and seal.sealed(KEY, later)


@pytest.mark.parametrize(
    "change",
    [{"body": "other"}, {"to": "13125550142"}, {"user": "mallory"}, {"_id": ObjectId()},
     {"priority": 100}, {"campaign": "c1"}, {"key": "k"}, {"audience": "verified"}],
)  # fmt: skip
def test_a_seal_breaks_when_what_the_message_is_changes(change: dict[str, Any]) -> None:
    sealed = {**DOC, "seal": seal.seal(KEY, DOC, seal.ADMITTED)}
    assert not seal.sealed(KEY, {**sealed, **change})


def test_a_seal_names_its_origin_and_another_key_does_not_make_it() -> None:
    made = {**DOC, "seal": seal.seal(KEY, DOC, seal.MADE)}
    assert seal.sealed(KEY, made, seal.MADE) and not seal.sealed(KEY, made, seal.ADMITTED)
    assert not seal.sealed("another-key", made)


def test_ids_of_different_types_seal_apart_and_odd_values_are_simply_unsealed() -> None:
    as_int = {**DOC, "_id": 1}
    as_text = {**DOC, "_id": "1"}
    assert seal.seal(KEY, as_int, seal.ADMITTED) != seal.seal(KEY, as_text, seal.ADMITTED)
    for given in (None, 42, ["x"], "é" * 64, {"$ne": ""}):
        assert not seal.sealed(KEY, {**DOC, "seal": given})
    assert not seal.sealed(KEY, {**DOC, "body": {"a": [1, {"b": 2}]}, "seal": "0" * 64})


def test_any_document_admission_meets_can_be_sealed() -> None:
    east = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    odd = {**DOC, "send_at": east, "body": "\ud800" + "x", "to": ["1"], "key": {"$gt": ""}}
    assert seal.sealed(KEY, {**odd, "seal": seal.seal(KEY, odd, seal.ADMITTED)})


@pytest.fixture
def memory_cycle(
    tmp_path: Path, directory: Directory, clock: ManualClock
) -> tuple[MemoryOutbox, Dispatcher, FakeProvider, KeyRing]:
    keys = KeyRing(tmp_path / "keys")
    keys.create_user_key("alice")
    signatures = Signatures(keys)
    outbox = MemoryOutbox(clock, sealer=signatures)
    provider = FakeProvider()
    cycle = Dispatcher(
        outbox, directory, provider, CountingPacer(), clock, DispatchConfig(), signatures
    )
    return outbox, cycle, provider, keys


def _signed(keys: KeyRing, **fields: Any) -> dict[str, Any]:
    doc = {"_id": ObjectId().binary.hex(), "user": "alice", "to": RECIPIENT, "body": "hi"}
    doc.update(fields)
    doc["signature"] = signing.sign(keys.user_key("alice") or "", doc)
    return doc


def test_in_memory_a_document_inserted_queued_is_normalised_before_it_is_sent(
    memory_cycle: tuple[MemoryOutbox, Dispatcher, FakeProvider, KeyRing], clock: ManualClock
) -> None:
    outbox, cycle, provider, keys = memory_cycle
    doc = _signed(keys, to="(312) 555-0199")
    outbox.insert({**doc, "state": "queued", "due_at": clock.now(), "attempts": 0, "rev": 1})

    for _ in range(4):
        cycle.run_once()

    assert provider.recipients() == [RECIPIENT]
    stored = outbox.find(doc["_id"])
    assert stored is not None and stored["to"] == RECIPIENT and outbox.trusts(stored)
    assert outbox.projected(doc["_id"])["state"] == "sent"  # type: ignore[index]


def test_in_memory_a_squatter_at_a_broadcast_message_id_is_replaced(
    memory_cycle: tuple[MemoryOutbox, Dispatcher, FakeProvider, KeyRing], clock: ManualClock
) -> None:
    outbox, cycle, provider, keys = memory_cycle
    request = _signed(keys, audience="verified", body="news")
    del request["to"]
    request["signature"] = signing.sign(keys.user_key("alice") or "", request)
    outbox.insert({"_id": f"{request['_id']}:{RECIPIENT}", "user": "x", "state": "sent"})
    outbox.insert(request)

    for _ in range(4):
        cycle.run_once()

    assert RECIPIENT in provider.recipients()
    assert outbox.projected(f"{request['_id']}:{RECIPIENT}")["state"] == "sent"  # type: ignore[index]


def test_the_daemon_seals_with_its_key_and_not_with_signatures_off(
    tmp_path: Path, db: Database[dict[str, Any]]
) -> None:
    def wired(require: bool) -> Dispatcher:
        settings = Settings.model_validate(
            {"security": {"keys_dir": str(tmp_path / "keys"), "require_signatures": require}}
        )
        return build_dispatcher(settings, db, provider=FakeProvider())

    sealing = wired(True)
    assert isinstance(sealing.store.sealer, Signatures) and sealing.signatures is not None
    assert not sealing.store.trusts({**DOC, "state": "queued"})
    assert wired(False).store.sealer is None
