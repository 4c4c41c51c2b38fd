"""The hot path's database cost, counted with pymongo's command monitoring on the real server
(what is counted: see tests/command_count.py)."""

from __future__ import annotations

import pytest

from tests.command_count import BUDGET, Measurement, measure
from tests.integration.helpers import Db
from tests.servers.mongo_server import MongoServer

MESSAGES = 20
BATCH = 10


@pytest.fixture(scope="module")
def measured(
    mongo_server: MongoServer, module_db: Db, tmp_path_factory: pytest.TempPathFactory
) -> Measurement:
    """One run, paced at the real 5 SMS/s, that each test examines."""
    keys = tmp_path_factory.mktemp("command-count") / "keys"
    return measure(mongo_server.uri, module_db, keys, messages=MESSAGES, batch_size=BATCH)


def test_a_sent_message_costs_at_most_seven_database_commands(measured: Measurement) -> None:
    assert (measured.sent, measured.accepted) == (MESSAGES, MESSAGES)
    assert measured.per_message <= BUDGET, measured.breakdown()
    # Each message's own commands: claim, in-flight mark, finish, and the `sent` copy; the
    # `sending` copies of a claimed batch are one bulk write, consent is read once per claimed
    # batch, the sender's grants once per cycle.
    assert measured.sending["findAndModify outbox"] == 3 * MESSAGES
    assert measured.sending["find users"] == measured.batches
    assert measured.sending["find authorized"] == MESSAGES // BATCH
    assert measured.sending["update message_status"] == MESSAGES + measured.batches
    # The replay defence: one spent-id insert per message; the 202s of a cycle are written to
    # their spent ids in one command.
    assert measured.sending["insert sent_ids"] == MESSAGES
    assert measured.sending["update sent_ids"] <= measured.batches
    assert measured.sending["find daemon_state"] <= 2


def test_admission_writes_a_whole_batch_its_status_copies_and_queue_entries_in_bulk(
    measured: Measurement,
) -> None:
    assert "findAndModify outbox" not in measured.admission, measured.admission
    # The bulk admission, then marking the copies synced.
    assert measured.admission["update outbox"] == 2, measured.admission
    assert measured.admission["update message_status"] == 1, measured.admission
    # The batch's places in the claim queue, in one insert.
    assert measured.admission["insert outbox_queue"] == 1, measured.admission
    assert measured.admission_per_message <= 5 / MESSAGES, measured.admission


def test_a_sent_message_s_status_is_written_once_per_public_change(
    measured: Measurement,
) -> None:
    # queued (admitted), sending (claimed), sent: the in-flight mark is not a public change.
    assert len(measured.status_writes) == MESSAGES
    assert set(measured.status_writes.values()) == {3}, measured.status_writes
