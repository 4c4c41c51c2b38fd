"""Bad input: every malformed document a producer may write ends with a reason while the rest of the
batch is sent, and no document, however odd, makes a cycle raise. On mongomock."""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import mongomock
import pytest
from bson.errors import InvalidDocument
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from jobs.dispatch.dispatcher import DispatchConfig, Dispatcher
from jobs.doubles.clock import ManualClock
from jobs.keys import KeyRing, Signatures
from jobs.model import Reason, State
from jobs.mongo.directory import Directory
from jobs.mongo.store import Doc, OutboxStore
from jobs.rules import intake, signing
from tests.unit.fakes import (
    OTHER_SENDER,
    RECIPIENT,
    RECIPIENT_2,
    SENDER,
    UNVERIFIED,
    CountingPacer,
    FakeProvider,
)

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
ABSENT: Any = object()
# Sent alongside each malformed document, and claimed before it.
COMPANION: dict[str, Any] = {
    "user": "alice",
    "to": RECIPIENT_2,
    "body": "companion",
    "priority": 100,
}
COMPANION_SEND = (RECIPIENT_2, SENDER, "companion")

Setup = Callable[[OutboxStore, Directory, FakeProvider], None]


def message(**changes: Any) -> dict[str, Any]:
    """A valid message to RECIPIENT with `changes`; ABSENT removes a field."""
    doc = {"user": "alice", "to": RECIPIENT, "body": "hello", **changes}
    return {k: v for k, v in doc.items() if v is not ABSENT}


def broadcast(**changes: Any) -> dict[str, Any]:
    return message(**{"to": ABSENT, "audience": "verified", "body": "news", **changes})


def drop_key_index(store: OutboxStore, directory: Directory, provider: FakeProvider) -> None:
    store.outbox.drop_index("user_key")


def consent_withdrawn_while_sending(
    store: OutboxStore, directory: Directory, provider: FakeProvider
) -> None:
    """Every recipient is unverified as the companion goes out, before the broadcast is handled."""

    def withdraw() -> None:
        directory.users.update_many({}, {"$set": {"verified": False}})

    provider.on_send = withdraw


@dataclass(frozen=True)
class Case:
    """A malformed document and how it ends: `state` with `reason`; "refused" means the database
    refuses to insert it. `sends` counts the provider calls it causes."""

    doc: dict[str, Any]
    reason: str | None
    state: str = "rejected"
    companion: dict[str, Any] = field(default_factory=dict)
    setup: Setup | None = None

    @property
    def sends(self) -> int:
        return {"sent": 1, "expanded": 2}.get(self.state, 0)


WRONG_TYPES: list[Any] = [42, 4.2, ["alice"], {"name": "alice"}, True, b"alice", NOW]


def wrong_types(name: str, reason: str, setup: Setup | None = None) -> dict[str, Case]:
    """A case for each non-text value of field `name`."""
    return {
        f"{name} {type(value).__name__}": Case(message(**{name: value}), reason, setup=setup)
        for value in WRONG_TYPES
    }


CASES: dict[str, Case] = {
    # Missing fields.
    "missing user": Case(message(user=ABSENT), "invalid_document"),
    "missing to": Case(message(to=ABSENT), "invalid_document"),
    "missing body": Case(message(body=ABSENT), "invalid_document"),
    "missing everything": Case({}, "invalid_document"),
    # Wrong-typed fields where text is expected.
    **wrong_types("user", "invalid_document"),
    "user None": Case(message(user=None), "invalid_document"),
    **wrong_types("to", "invalid_number"),
    "to int number": Case(message(to=13125550199), "invalid_number"),
    "to None": Case(message(to=None), "invalid_document"),
    # mongomock's unique index cannot hold a list or a document, as a server's can.
    **wrong_types("key", "invalid_document", drop_key_index),
    **wrong_types("from", "invalid_number"),
    "send_at text": Case(message(send_at="2026-01-06T09:00:00Z"), "invalid_document"),
    "send_at number": Case(message(send_at=1767690000), "invalid_document"),
    "priority text": Case(message(priority="high"), "invalid_document"),
    "priority float": Case(message(priority=1.5), "invalid_document"),
    "priority bool": Case(message(priority=True), "invalid_document"),
    "priority too high": Case(message(priority=101), "invalid_document"),
    "audience everyone": Case(broadcast(audience="everyone"), "invalid_document"),
    "audience None": Case(broadcast(audience=None), "invalid_document"),
    "audience list": Case(broadcast(audience=["verified"]), "invalid_document"),
    "broadcast naming a recipient": Case(broadcast(to=RECIPIENT), "invalid_document"),
    # Bodies that are not text.
    **wrong_types("body", "invalid_document"),
    "body None": Case(message(body=None), "invalid_document"),
    # Empty, enormous and over-long bodies.
    "body empty": Case(message(body=""), "empty_body"),
    "body spaces": Case(message(body="   "), "empty_body"),
    "body whitespace": Case(message(body="\n\t \u3000\u00a0"), "empty_body"),
    "body zero-width": Case(message(body="\u200b"), "empty_body"),
    "body invisible": Case(message(body="\ufeff \u00ad\u2060"), "empty_body"),
    "broadcast body empty": Case(broadcast(body=" "), "empty_body"),
    "body 100 kB": Case(message(body="x" * 100_000), "body_too_long"),
    "body 100 kB spaces": Case(message(body=" " * 100_000), "empty_body"),
    "body 1601": Case(message(body="x" * 1601), "body_too_long"),
    "body 11 ascii segments": Case(message(body="x" * 1401), "body_too_long"),
    "body 11 ucs2 segments": Case(message(body="\u00e9" * 701), "body_too_long"),
    "body 11 segments of emoji": Case(message(body="\U0001f600" * 351), "body_too_long"),
    "broadcast body too long": Case(broadcast(body="x" * 1401), "body_too_long"),
    "body 10 segments": Case(message(body="x" * 1400), None, "sent"),
    # Invalid and foreign numbers.
    **{
        f"to {number!r}": Case(message(to=number), "invalid_number")
        for number in [
            *("", "   ", "12345", "call me", "1312555019", "131255501999", "+1 999 555 0199"),
            *("+44 20 7946 0958", "+33 1 42 68 53 00", "+1" + "2" * 60),
        ]
    },
    "from foreign": Case(message(**{"from": "+44 20 7946 0958"}), "invalid_number"),
    "from short": Case(message(**{"from": "1206555010"}), "invalid_number"),
    # MongoDB operators inside values, and `$` at the start of names.
    "user $ne": Case(message(user={"$ne": None}), "invalid_document"),
    "user $where": Case(message(user="$where"), "invalid_document"),
    "to $ne": Case(message(to={"$ne": None}), "invalid_number"),
    "to $gt": Case(message(to={"$gt": ""}), "invalid_number"),
    "body $gt": Case(message(body={"$gt": ""}), "invalid_document"),
    "from $exists": Case(message(**{"from": {"$exists": True}}), "invalid_number"),
    "key $gt": Case(message(key={"$gt": ""}), "invalid_document", setup=drop_key_index),
    "key $regex": Case(message(key="$regex"), "invalid_document"),
    "send_at $lt": Case(message(send_at={"$lt": NOW}), "invalid_document"),
    "priority $gt": Case(message(priority={"$gt": 0}), "invalid_document"),
    "audience $ne": Case(broadcast(audience={"$ne": None}), "invalid_document"),
    "nested $ names": Case(
        message(meta={"$where": "sleep(9)", "$set": {"state": "sent"}}), None, "sent"
    ),
    "top-level $ name": Case(message(**{"$where": "sleep(9)"}), None, "refused"),
    # NUL characters.
    "user NUL": Case(message(user="al\x00ice"), "invalid_document"),
    "body NUL": Case(message(body="hel\x00lo"), "invalid_document"),
    "body only NUL": Case(message(body="\x00"), "invalid_document"),
    "to NUL": Case(message(to="1312555\x000199"), "invalid_number"),
    "from NUL": Case(message(**{"from": "1206555\x000100"}), "invalid_number"),
    "key NUL": Case(message(key="order\x00-1"), "invalid_document"),
    "NUL in an extra field": Case(message(note="a\x00b"), None, "sent"),
    # Other control characters in a body; line breaks and tabs are text.
    "body BEL": Case(message(body="ring\x07"), "invalid_document"),
    "body ESC": Case(message(body="\x1b[31mred"), "invalid_document"),
    "body DEL": Case(message(body="oops\x7f"), "invalid_document"),
    "body C1 NEL": Case(message(body="next\x85line"), "invalid_document"),
    "body newline and tab": Case(message(body="line one\r\nline\ttwo"), None, "sent"),
    # Letters in a number are never read as a keypad would.
    "to vanity": Case(message(to="206555CALL"), "invalid_number"),
    "to O and l": Case(message(to="206555OlOl"), "invalid_number"),
    # Unknown extra fields are ignored.
    "extra fields": Case(
        message(color="blue", tags=["a", 1], meta={"a": {"b": [None]}}, n=None), None, "sent"
    ),
    "absent optionals as None": Case(
        message(**{"from": None}, key=None, send_at=None, priority=None), None, "sent"
    ),
    "daemon fields preset": Case(
        message(kind="broadcast", attempts=99, rev="x", due_at="soon", claim_token=1), None, "sent"
    ),
    "broadcast with preset progress": Case(
        broadcast(recipients="many", color="blue"), None, "expanded"
    ),
    # What policy refuses when the message is claimed.
    "from not granted": Case(message(**{"from": "12065550199"}), "source_not_granted"),
    "broadcast from not granted": Case(broadcast(**{"from": "12065550199"}), "source_not_granted"),
    "from granted, spelt otherwise": Case(message(**{"from": "(206) 555-0101"}), None, "sent"),
    "user not granted": Case(message(user="mallory"), "not_authorized"),
    "recipient unverified": Case(message(to=UNVERIFIED), "not_verified"),
    "broadcast without verified recipients": Case(
        broadcast(), "no_recipients", setup=consent_withdrawn_while_sending
    ),
    # Reused idempotency keys.
    "duplicate key, no index": Case(
        message(key="order-1"), "duplicate_key", companion={"key": "order-1"}, setup=drop_key_index
    ),
    "duplicate key, unique index": Case(
        message(key="order-1"), None, "refused", companion={"key": "order-1"}
    ),
}


def status(store: OutboxStore, doc_id: Any) -> dict[str, Any]:
    found = store.status.find_one({"_id": doc_id})
    assert found is not None, f"{doc_id!r} has no status"
    return found


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_malformed_document_ends_with_its_reason_while_the_batch_is_sent(
    dispatcher: Dispatcher,
    store: OutboxStore,
    directory: Directory,
    provider: FakeProvider,
    case: Case,
) -> None:
    if case.setup is not None:
        case.setup(store, directory, provider)
    companion = store.outbox.insert_one({**COMPANION, **case.companion}).inserted_id
    doc = copy.deepcopy(case.doc)
    if case.state == "refused":
        with pytest.raises((InvalidDocument, DuplicateKeyError)):
            store.outbox.insert_one(doc)
        doc_id = None
    else:
        doc_id = store.outbox.insert_one(doc).inserted_id

    dispatcher.run_once()
    dispatcher.run_once()

    assert status(store, companion)["state"] == "sent"
    assert provider.calls[0] == COMPANION_SEND
    assert len(provider.calls) == 1 + case.sends
    if doc_id is not None:
        projected = status(store, doc_id)
        assert (projected["state"], projected.get("error", {}).get("code")) == (
            case.state,
            case.reason,
        )
    assert store.outbox.count_documents({"state": {"$in": [None, "queued", "sending"]}}) == 0


def test_names_starting_with_dollar_are_ignored_by_intake() -> None:
    """Some servers store them (MongoDB 5+); intake reads only the producer's fields."""
    admission = intake.admit(message(**{"$where": "sleep(9)", "$set": {"state": "sent"}}), NOW)

    assert admission.problem is None
    assert set(admission.fields) >= {"user", "to", "body"}
    assert not any(name.startswith("$") for name in admission.fields)


@pytest.mark.parametrize(
    "send_at",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1, 1, 1),
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=repr,
)
def test_send_at_at_the_edges_of_the_calendar_is_admitted(send_at: datetime) -> None:
    assert intake.admit(message(send_at=send_at), NOW).problem is None


@pytest.mark.parametrize(
    "send_at",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["year 1 east of UTC", "year 9999 west of UTC"],
)
def test_send_at_outside_the_calendar_in_utc_is_invalid_document(send_at: datetime) -> None:
    admission = intake.admit(message(send_at=send_at), NOW)

    assert admission.problem is not None
    assert admission.problem.code is Reason.INVALID_DOCUMENT
    assert admission.problem.detail.startswith("send_at")


# Random documents


DAEMON_STATE = "state"  # a document with any state is one the daemon has already taken in
FIELD_NAMES = [
    *sorted(intake.PRODUCER_FIELDS),
    *("signature", "campaign", "kind", "recipients", "fanout_after"),
]
PLAUSIBLE = [
    "alice",
    "mallory",
    "verified",
    RECIPIENT,
    "(312) 555-0142",
    UNVERIFIED,
    SENDER,
    OTHER_SENDER,
    "hello",
    " ",
    "\u200b",
    "k-1",
    "$where",
    "\x00",
]
names = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10)).filter(
    lambda name: name != DAEMON_STATE
)
scalars = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.text(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.binary(),
    st.datetimes(timezones=st.timezones()),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(
        st.sampled_from(["$ne", "$gt", "$where", "a", ""]) | st.text(), scalars, max_size=3
    ),
)
documents = st.dictionaries(names, values, max_size=10)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_intake_never_raises_and_either_refuses_with_a_reason_or_admits(
    doc: dict[str, Any],
) -> None:
    admission = intake.admit(doc, NOW)

    if admission.problem is not None:
        assert isinstance(admission.problem.code, Reason)
        assert admission.fields == {}
    else:
        fields = admission.fields
        assert isinstance(fields["user"], str)
        assert isinstance(fields["body"], str)
        assert fields.get("audience") == "verified" or len(fields["to"]) == 11
        assert fields["due_at"].utcoffset() == timedelta(0)
        assert fields["segments"] >= 1


def fresh_dispatcher(keys_dir: Path | None) -> Dispatcher:
    """The fixtures' world, built anew for one example: alice may send; two verified recipients."""
    clock = ManualClock(NOW)
    db: Database[Doc] = mongomock.MongoClient(tz_aware=True)["t"]
    store = OutboxStore(db, clock)
    store.ensure_indexes()
    directory = Directory(db)
    directory.grant("alice", SENDER)
    directory.grant("alice", OTHER_SENDER)
    for number in (RECIPIENT, RECIPIENT_2):
        directory.add(number, verified=True, now=NOW)
    directory.add(UNVERIFIED, verified=False, now=NOW)
    signatures = None
    if keys_dir is not None:
        keys = KeyRing(keys_dir)
        keys.create_user_key("alice")
        signatures = Signatures(keys)
    return Dispatcher(
        store, directory, FakeProvider(), CountingPacer(), clock, DispatchConfig(), signatures
    )


@contextlib.contextmanager
def keys_dir(signed: bool) -> Iterator[Path | None]:
    if not signed:
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def has_dollar_names(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(k).startswith("$") or has_dollar_names(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_dollar_names(item) for item in value)
    return False


def insertable(store: OutboxStore, doc: dict[str, Any]) -> Any:
    """The id of `doc` once inserted, or None when mongomock refuses it or cannot find it again."""
    if isinstance(doc.get("key"), list | dict):
        return None  # mongomock's unique index cannot hold them (a server's can)
    if has_dollar_names(doc.get("_id")):
        return None  # servers refuse them; mongomock takes them for a query
    try:
        doc_id = store.outbox.insert_one(doc).inserted_id
    except (InvalidDocument, PyMongoError, OverflowError, ValueError, TypeError):
        return None
    # A NaN or operator-shaped _id is stored, but mongomock never matches it again.
    return doc_id if store.find(doc_id) is not None else None


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signatures on"])
@settings(max_examples=50, deadline=None)
@given(docs=st.lists(st.tuples(documents, st.booleans()), min_size=1, max_size=4))
def test_cycle_never_raises_and_every_document_ends_in_a_state(
    signed: bool, docs: list[tuple[dict[str, Any], bool]]
) -> None:
    with keys_dir(signed) as folder:
        dispatcher = fresh_dispatcher(folder)
        store = dispatcher.store
        assert isinstance(store, OutboxStore)
        ids = []
        for generated, signs in docs:
            doc = dict(generated)
            if signs and dispatcher.signatures is not None:
                key = dispatcher.signatures.keys.user_key("alice")
                assert key is not None
                # A date that overflows in UTC cannot be signed, nor stored.
                with contextlib.suppress(OverflowError):
                    doc["signature"] = signing.sign(key, doc)
            doc_id = insertable(store, doc)
            if doc_id is not None:
                ids.append(doc_id)
        assume(ids)

        for _ in range(10):
            if dispatcher.run_once().idle:
                break

        states = [status(store, doc_id)["state"] for doc_id in ids]
        assert set(states) <= {state.value for state in State}
        assert State.SENDING.value not in states
