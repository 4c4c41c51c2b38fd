"""Sign-up limits hold when the form is hammered: concurrent requests on the real server never
share a slot, so no more codes go out than the limits allow."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from jobs.clock import SystemClock
from jobs.keys import KeyRing
from jobs.mongo.directory import Directory
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import OutboxStore
from jobs.optin.service import OptInConfig, SignUp
from jobs.rules.optin import Limits, Refusal
from tests.integration.stack import SOURCE, Db

PERSON = "12065550177"


def signup(db: Db, tmp_path: Path, limits: Limits) -> SignUp:
    clock = SystemClock()
    store = OptInStore(db)
    store.ensure_indexes()
    outbox = OutboxStore(db, clock)
    outbox.ensure_indexes()
    directory = Directory(db)
    directory.grant("ops", SOURCE)
    config = replace(OptInConfig(number=SOURCE), limits=limits)
    return SignUp(store, outbox, directory, KeyRing(tmp_path / "keys"), clock, config)


def hammer(service: SignUp, requests: list[tuple[str, str]]) -> list[Refusal | None]:
    service.keys.daemon_key()  # made once, before the threads race for it
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda r: service.request(r[0], True, r[1], "hammer"), requests)
        return [answer.refusal for answer in answers]


def test_a_number_hammered_from_many_addresses_gets_three_codes(db: Db, tmp_path: Path) -> None:
    service = signup(db, tmp_path, Limits())
    refusals = hammer(service, [(PERSON, f"10.0.0.{i}") for i in range(24)])
    assert refusals.count(None) == 3
    assert set(refusals) == {None, Refusal.NUMBER_HOURLY}
    assert db["outbox"].count_documents({"to": PERSON}) == 3


def test_an_address_hammering_many_numbers_gets_ten_codes(db: Db, tmp_path: Path) -> None:
    service = signup(db, tmp_path, Limits())
    numbers = [f"1312555{n:04d}" for n in range(500, 530)]
    refusals = hammer(service, [(number, "203.0.113.9") for number in numbers])
    assert refusals.count(None) == 10
    assert db["outbox"].count_documents({}) == 10


def test_the_global_cap_holds_under_load(db: Db, tmp_path: Path) -> None:
    service = signup(db, tmp_path, Limits(codes_per_hour=7))
    numbers = [f"1312555{n:04d}" for n in range(600, 640)]
    refusals = hammer(service, [(n, f"10.1.{i}.1") for i, n in enumerate(numbers)])
    sent = db["outbox"].count_documents({})
    assert sent <= 7 and refusals.count(None) == sent
    assert Refusal.PAUSED in refusals
