"""Signed messages: the canonical form, the key ring, and the send cycle refusing what no key holder
signed, against a fake provider on mongomock."""

from __future__ import annotations

import hashlib
import hmac
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from jobs import producer
from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.keys import KeyRing, Signatures
from jobs.model import Reason
from jobs.mongo.directory import Directory
from jobs.mongo.store import OutboxStore
from jobs.rules import signing
from tests.unit.fakes import (
    LEASE,
    MAX_ATTEMPTS,
    OTHER_SENDER,
    RECIPIENT,
    RECIPIENT_2,
    SENDER,
    CountingPacer,
    FakeProvider,
)

KEY = "0123456789abcdef" * 4
CHICAGO = timezone(timedelta(hours=-6))
# A message with every field a producer may sign except priority, which is absent and signs as 0.
KNOWN: dict[str, Any] = {
    "_id": ObjectId("6650f1a2b3c4d5e6f7a8b9c0"),
    "user": "alice",
    "to": "(312) 555-0199",
    "from": "+1 206 555 0100",
    "body": "Caf\u00e9 at 3 \u2014 see you",
    "key": "order-17",
    "send_at": datetime(2026, 1, 6, 9, 0, 0, 123456, tzinfo=CHICAGO),
}
KNOWN_CANONICAL = (
    '["sms-outbox-v2","6650f1a2b3c4d5e6f7a8b9c0","alice","13125550199","12065550100",'
    '"Caf\u00e9 at 3 \u2014 see you","order-17","2026-01-06T15:00:00.123Z",0,null,null]'
)
KNOWN_SIGNATURE = "f0729ef754f6c64a0d16ec861e5985ca9c7b493b7f79fa1c2883800618cc0917"


# The canonical form


def test_known_message_has_a_fixed_canonical_form_and_signature() -> None:
    expected = KNOWN_CANONICAL.encode("utf-8")
    independent = hmac.new(KEY.encode("utf-8"), expected, hashlib.sha256).hexdigest()

    assert signing.canonical(KNOWN) == expected
    assert independent == KNOWN_SIGNATURE
    assert signing.sign(KEY, KNOWN) == KNOWN_SIGNATURE


def test_broadcast_and_child_fields_take_their_places_in_the_canonical_form() -> None:
    broadcast = {"_id": "b1", "user": "alice", "audience": "verified", "body": "news",
                 "priority": 5}  # fmt: skip
    child = {"_id": f"c1:{RECIPIENT}", "user": "alice", "to": RECIPIENT, "from": SENDER,
             "body": "news", "campaign": "c1"}  # fmt: skip

    assert signing.canonical(broadcast) == (
        b'["sms-outbox-v2","b1","alice",null,null,"news",null,null,5,"verified",null]'
    )
    assert signing.canonical(child) == (
        b'["sms-outbox-v2","c1:13125550199","alice","13125550199","12065550100","news",null,null,'
        b'0,null,"c1"]'
    )


@pytest.mark.parametrize(
    ("field", "spelling", "normalized"),
    [
        ("from", "(206) 555-0101", "12065550101"),
        ("from", "+1 206 555 0101", "12065550101"),
        ("to", "312.555.0142", "13125550142"),
        ("to", "+13125550142", "13125550142"),
    ],
)
def test_a_number_signs_the_same_however_it_is_written(
    field: str, spelling: str, normalized: str
) -> None:
    assert signing.sign(KEY, {**KNOWN, field: spelling}) == signing.sign(
        KEY, {**KNOWN, field: normalized}
    )


def test_absent_priority_signs_as_zero() -> None:
    assert signing.sign(KEY, {**KNOWN, "priority": 0}) == KNOWN_SIGNATURE


def test_sub_millisecond_send_at_signs_as_stored() -> None:
    """The database keeps milliseconds, so what a producer signs must survive the round trip."""
    truncated = KNOWN["send_at"].replace(microsecond=123000)

    assert signing.sign(KEY, {**KNOWN, "send_at": truncated}) == KNOWN_SIGNATURE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user", "bob"),
        ("to", RECIPIENT_2),
        ("from", OTHER_SENDER),
        ("body", "Caf\u00e9 at 4 \u2014 see you"),
        ("body", "Caf\u00e9 at 3 \u2014 see you "),
        ("key", "order-18"),
        ("key", None),
        ("send_at", datetime(2026, 1, 6, 15, 0, 0, 124000, tzinfo=UTC)),
        ("priority", 1),
        ("audience", "verified"),
        ("campaign", "c1"),
    ],
    ids=repr,
)
def test_changing_any_signed_field_breaks_the_signature(field: str, value: Any) -> None:
    changed = {**KNOWN, field: value}

    assert signing.sign(KEY, changed) != KNOWN_SIGNATURE
    problem = signing.check(KEY, {**changed, "signature": KNOWN_SIGNATURE}, "user 'alice'")
    assert problem is not None
    assert problem.code is Reason.SIGNATURE


def test_unsigned_fields_do_not_change_the_signature() -> None:
    extra = {**KNOWN, "state": "queued", "attempts": 3, "color": "blue"}

    assert signing.sign(KEY, extra) == KNOWN_SIGNATURE


def test_valid_signature_passes_in_either_case_of_hex() -> None:
    assert signing.check(KEY, {**KNOWN, "signature": KNOWN_SIGNATURE}, "alice") is None
    assert signing.check(KEY, {**KNOWN, "signature": KNOWN_SIGNATURE.upper()}, "alice") is None


@pytest.mark.parametrize(
    ("key", "signature", "detail"),
    [
        (None, KNOWN_SIGNATURE, "no signing key is configured for user 'alice'"),
        (KEY, None, "the message is not signed"),
        (KEY, "", "the message is not signed"),
        (KEY, 42, "the message is not signed"),
        (KEY, {"$ne": None}, "the message is not signed"),
        (KEY, "0" * 64, "the signature does not match the key of user 'alice'"),
        ("f" * 64, KNOWN_SIGNATURE, "the signature does not match the key of user 'alice'"),
        (KEY, "\u00e9" * 64, "the signature does not match the key of user 'alice'"),
        (KEY, "\ud800", "the signature does not match the key of user 'alice'"),
    ],
    ids=[
        "no key",
        "missing",
        "empty",
        "int",
        "operator",
        "wrong",
        "other key",
        "non-ascii",
        "lone",
    ],
)
def test_check_says_why_a_signature_is_refused(
    key: str | None, signature: Any, detail: str
) -> None:
    doc = {**KNOWN} if signature is None else {**KNOWN, "signature": signature}

    problem = signing.check(key, doc, "user 'alice'")

    assert problem is not None
    assert (problem.code, problem.detail) == (Reason.SIGNATURE, detail)


def test_new_keys_are_64_hex_digits_and_differ() -> None:
    first, second = signing.new_key(), signing.new_key()

    assert len(first) == 64
    assert int(first, 16) >= 0
    assert first != second


# The key ring


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_user_key_file_is_created_private_under_users(tmp_path: Path) -> None:
    keys = KeyRing(tmp_path)

    path = keys.create_user_key("alice")

    assert path == tmp_path / "users" / "alice.key"
    assert mode(path) == 0o600
    key = keys.user_key("alice")
    assert key is not None
    assert len(key) == 64
    assert path.read_text(encoding="utf-8") == key + "\n"


def test_creating_an_existing_user_key_keeps_it(tmp_path: Path) -> None:
    keys = KeyRing(tmp_path)
    path = keys.create_user_key("alice")
    path.write_text("handed-out-key\n", encoding="utf-8")

    again = keys.create_user_key("alice")

    assert again == path
    assert keys.user_key("alice") == "handed-out-key"


@pytest.mark.parametrize(
    "user", ["../../etc/passwd", "a/b", "..", "/abs", "a\\b", "\u00e9l\u00e8ve", "~root"]
)
def test_user_name_cannot_leave_the_users_folder(tmp_path: Path, user: str) -> None:
    keys_dir = tmp_path / "keys"
    keys = KeyRing(keys_dir)

    path = keys.create_user_key(user)

    assert path.resolve().parent == (keys_dir / "users").resolve()
    assert path.is_file()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()) == [
        path.relative_to(tmp_path)
    ]
    assert keys.user_key(user) == path.read_text(encoding="utf-8").strip()


@pytest.mark.parametrize("user", ["/" * 200, "\u5f20" * 200, "a" * 200])
def test_longest_user_names_get_a_key_file_the_file_system_accepts(
    tmp_path: Path, user: str
) -> None:
    keys = KeyRing(tmp_path)
    keys.create_user_key("alice")

    assert keys.user_key(user) is None
    path = keys.create_user_key(user)

    assert path.parent == tmp_path / "users"
    assert len(path.name) <= 255
    assert keys.user_key(user) == path.read_text(encoding="utf-8").strip()
    assert keys.user_key(user) != keys.user_key("alice")


def test_long_user_names_sharing_a_prefix_get_different_files(tmp_path: Path) -> None:
    keys = KeyRing(tmp_path)

    first, second = keys.create_user_key("/" * 199 + "a"), keys.create_user_key("/" * 199 + "b")

    assert first != second
    assert keys.user_key("/" * 199 + "a") != keys.user_key("/" * 199 + "b")


def test_deleting_the_key_file_revokes_the_key(tmp_path: Path) -> None:
    keys = KeyRing(tmp_path)
    path = keys.create_user_key("alice")
    key = keys.user_key("alice")
    assert key is not None
    signed = {**KNOWN, "signature": signing.sign(key, KNOWN)}
    assert Signatures(keys).check(signed) is None

    path.unlink()

    assert keys.user_key("alice") is None
    problem = Signatures(keys).check(signed)
    assert problem is not None
    assert problem.detail == "no signing key is configured for user 'alice'"


def test_configured_user_keys_win_over_files(tmp_path: Path) -> None:
    KeyRing(tmp_path).create_user_key("alice")
    keys = KeyRing(tmp_path, user_keys={"alice": KEY})

    assert keys.user_key("alice") == KEY
    assert Signatures(keys).check({**KNOWN, "signature": KNOWN_SIGNATURE}) is None


def test_daemon_key_is_created_once_and_reused(tmp_path: Path) -> None:
    keys = KeyRing(tmp_path)

    first = keys.daemon_key()

    path = tmp_path / "daemon.key"
    assert mode(path) == 0o600
    assert path.read_text(encoding="utf-8") == first + "\n"
    assert keys.daemon_key() == first
    assert KeyRing(tmp_path).daemon_key() == first


def test_configured_daemon_key_writes_no_file(tmp_path: Path) -> None:
    keys = KeyRing(tmp_path, daemon_key=KEY)

    assert keys.daemon_key() == KEY
    assert not (tmp_path / "daemon.key").exists()


# The send cycle with signatures required


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    ring = KeyRing(tmp_path / "keys")
    ring.create_user_key("alice")
    ring.create_user_key("bob")
    return ring


@pytest.fixture
def signed_dispatcher(
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    pacer: CountingPacer,
    clock: ManualClock,
    keys: KeyRing,
) -> Dispatcher:
    config = DispatchConfig(lease_seconds=LEASE.total_seconds(), max_attempts=MAX_ATTEMPTS)
    return Dispatcher(store, directory, provider, pacer, clock, config, Signatures(keys))


def key_of(keys: KeyRing, user: str) -> str:
    key = keys.user_key(user)
    assert key is not None
    return key


def insert(store: OutboxStore, doc: dict[str, Any], key: str | None = None) -> Any:
    """Insert `doc` as any MongoDB client could, signed with `key` when one is given."""
    doc = {"_id": ObjectId(), **doc}
    if key is not None:
        doc = {**doc, "signature": signing.sign(key, doc)}
    return store.outbox.insert_one(doc).inserted_id


def message(**fields: Any) -> dict[str, Any]:
    return {"user": "alice", "to": "(312) 555-0199", "body": "hello", **fields}


def status(store: OutboxStore, doc_id: Any) -> dict[str, Any]:
    found = store.status.find_one({"_id": doc_id})
    assert found is not None
    return found


def outcome(store: OutboxStore, doc_id: Any) -> tuple[str, str | None]:
    projected = status(store, doc_id)
    return projected["state"], projected.get("error", {}).get("code")


def test_message_signed_with_its_users_key_is_sent(
    signed_dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    doc_id = insert(store, message(**{"from": "(206) 555-0101"}), key_of(keys, "alice"))

    report = signed_dispatcher.run_once()

    assert report.outcomes == {"sent": 1}
    assert outcome(store, doc_id) == ("sent", None)
    assert provider.calls == [(RECIPIENT, OTHER_SENDER, "hello")]


def test_message_enqueued_by_the_producer_with_its_key_is_sent(
    signed_dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
) -> None:
    enqueued = producer.enqueue(
        store,
        user="alice",
        to="312-555-0142",
        body="Caf\u00e9 \u2014 open",
        now=clock.now(),
        key="order-1",
        send_at=clock.now() + timedelta(microseconds=1500),
        priority=3,
        sign_key=lambda: key_of(keys, "alice"),
    )
    clock.advance(1)

    signed_dispatcher.run_once()

    assert outcome(store, enqueued.id) == ("sent", None)
    assert provider.calls == [(RECIPIENT_2, SENDER, "Caf\u00e9 - open")]


@pytest.mark.parametrize(
    "signer", [None, "bob", "daemon"], ids=["unsigned", "other user", "daemon key"]
)
def test_message_not_signed_by_its_user_is_rejected_without_sending(
    signed_dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    pacer: CountingPacer,
    keys: KeyRing,
    signer: str | None,
) -> None:
    key = {None: None, "bob": key_of(keys, "bob"), "daemon": keys.daemon_key()}[signer]
    doc_id = insert(store, message(), key)

    report = signed_dispatcher.run_once()

    assert report.outcomes == {"rejected": 1}
    assert outcome(store, doc_id) == ("rejected", "signature")
    assert provider.calls == []
    assert pacer.acquired == 0


def test_message_of_a_user_without_a_key_is_rejected(
    signed_dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
) -> None:
    directory.grant("carol", SENDER)
    doc_id = insert(store, message(user="carol"), KEY)

    signed_dispatcher.run_once()

    assert outcome(store, doc_id) == ("rejected", "signature")
    assert (
        status(store, doc_id)["error"]["detail"] == "no signing key is configured for user 'carol'"
    )
    assert provider.calls == []


@pytest.mark.parametrize("when", ["before intake", "after intake"])
def test_signed_message_altered_in_the_database_is_rejected(
    signed_dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    keys: KeyRing,
    when: str,
) -> None:
    doc_id = insert(store, message(), key_of(keys, "alice"))
    if when == "after intake":
        signed_dispatcher.admit()
    store.outbox.update_one({"_id": doc_id}, {"$set": {"body": "send me your password"}})

    signed_dispatcher.run_once()

    assert outcome(store, doc_id) == ("rejected", "signature")
    assert provider.calls == []


def test_message_whose_key_was_revoked_before_sending_is_rejected(
    signed_dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    doc_id = insert(store, message(), key_of(keys, "alice"))
    signed_dispatcher.admit()

    keys.path_for("alice").unlink()
    signed_dispatcher.run_once()

    assert outcome(store, doc_id) == ("rejected", "signature")
    assert provider.calls == []


def test_signed_broadcast_fans_out_to_daemon_signed_messages_that_are_sent(
    signed_dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    campaign = insert(
        store, {"user": "alice", "audience": "verified", "body": "news"}, key_of(keys, "alice")
    )

    first = signed_dispatcher.run_once()
    second = signed_dispatcher.run_once()

    assert (first.outcomes, second.outcomes) == ({"expanded": 1}, {"sent": 2})
    children = list(store.outbox.find({"campaign": str(campaign)}))
    assert len(children) == 2
    for child in children:
        assert child["signature"] == signing.sign(keys.daemon_key(), child)
        assert signing.check(key_of(keys, "alice"), child, "alice") is not None
    assert sorted(provider.calls) == [(RECIPIENT_2, SENDER, "news"), (RECIPIENT, SENDER, "news")]


def test_unsigned_broadcast_is_rejected_before_fanning_out(
    signed_dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider
) -> None:
    campaign = insert(store, {"user": "alice", "audience": "verified", "body": "news"})

    signed_dispatcher.run_once()
    signed_dispatcher.run_once()

    assert outcome(store, campaign) == ("rejected", "signature")
    assert store.outbox.count_documents({"campaign": str(campaign)}) == 0
    assert provider.calls == []


def child(clock: ManualClock, queued: bool) -> dict[str, Any]:
    """A document shaped like a broadcast's message, as someone with write access could insert."""
    doc: dict[str, Any] = {
        "_id": f"forged:{RECIPIENT}",
        "kind": "message",
        "user": "alice",
        "to": RECIPIENT,
        "from": SENDER,
        "body": "urgent: call 555-0000",
        "campaign": "forged",
    }
    if queued:
        doc.update(state="queued", due_at=clock.now(), attempts=0, priority=0, rev=1)
    return doc


@pytest.mark.parametrize("queued", [False, True], ids=["through intake", "skipping intake"])
@pytest.mark.parametrize("signer", [None, "alice", "guessed"])
def test_forged_broadcast_message_is_rejected(
    signed_dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    keys: KeyRing,
    clock: ManualClock,
    queued: bool,
    signer: str | None,
) -> None:
    key = {None: None, "alice": key_of(keys, "alice"), "guessed": KEY}[signer]
    doc_id = insert(store, child(clock, queued), key)

    report = signed_dispatcher.run_once()

    assert provider.calls == []
    if not queued:
        # Intake refuses a producer's document that poses as a broadcast's message.
        assert outcome(store, doc_id) == ("rejected", "invalid_document")
        return
    assert report.outcomes == {"rejected": 1}
    assert outcome(store, doc_id) == ("rejected", "signature")
    mismatch = "the signature does not match the key of the daemon"
    detail = "the message is not signed" if signer is None else mismatch
    assert status(store, doc_id)["error"]["detail"] == detail


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"kind": "message"},
        {"kind": "broadcast"},
        {"to": None, "audience": "verified"},
        {"to": None, "audience": "verified", "kind": "message"},
    ],
    ids=repr,
)
def test_unsigned_document_set_to_queued_directly_is_still_rejected(
    signed_dispatcher: Dispatcher,
    store: OutboxStore,
    provider: FakeProvider,
    clock: ManualClock,
    fields: dict[str, Any],
) -> None:
    doc = {**message(), "state": "queued", "due_at": clock.now(), **fields}
    doc_id = insert(store, {k: v for k, v in doc.items() if v is not None})

    report = signed_dispatcher.run_once()

    assert report.outcomes == {"rejected": 1}
    assert outcome(store, doc_id) == ("rejected", "signature")
    assert store.outbox.count_documents({"campaign": {"$exists": True}}) == 0
    assert provider.calls == []


def test_signed_message_relabelled_as_broadcast_goes_only_to_its_recipient(
    signed_dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    doc_id = insert(store, message(), key_of(keys, "alice"))
    signed_dispatcher.admit()
    store.outbox.update_one({"_id": doc_id}, {"$set": {"kind": "broadcast"}})

    signed_dispatcher.run_once()
    signed_dispatcher.run_once()

    assert store.outbox.count_documents({"campaign": {"$exists": True}}) == 0
    assert status(store, doc_id)["state"] == "sent"
    assert provider.calls == [(RECIPIENT, SENDER, "hello")]


def test_signed_broadcast_relabelled_as_message_still_fans_out(
    signed_dispatcher: Dispatcher, store: OutboxStore, provider: FakeProvider, keys: KeyRing
) -> None:
    campaign = insert(
        store, {"user": "alice", "audience": "verified", "body": "news"}, key_of(keys, "alice")
    )
    signed_dispatcher.admit()
    store.outbox.update_one({"_id": campaign}, {"$set": {"kind": "message"}})

    signed_dispatcher.run_once()
    signed_dispatcher.run_once()

    assert status(store, campaign)["state"] == "expanded"
    assert sorted(provider.recipients()) == sorted([RECIPIENT, RECIPIENT_2])
