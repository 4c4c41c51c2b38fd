"""A producer's status view, on the real server: its pipeline gives a user its own rows only,
without the fields that would let it forge a receipt."""

from __future__ import annotations

import pytest
from pymongo.database import Database

from jobs.mongo.roles import view_pipeline
from jobs.mongo.store import Doc

pytestmark = pytest.mark.server


def test_a_user_s_status_view_shows_its_own_messages_without_provider_ids(
    db: Database[Doc],
) -> None:
    db["message_status"].insert_many(
        [
            {"_id": "a1", "user": "alice", "state": "sent", "to": "13125550199",
             "provider_id": "mdr2-a1", "receipts": [{"id": "mdr2-a1"}], "rev": 3},
            {"_id": "b1", "user": "bob", "state": "sent", "to": "13125550142",
             "provider_id": "mdr2-b1", "rev": 3},
            {"_id": "r1", "user": "sms-outbox", "state": "sent", "campaign": "reply:stop:x",
             "reply_to": "mdr2-in", "provider_id": "mdr2-r1", "rev": 3},
        ]
    )  # fmt: skip

    rows = list(db["message_status"].aggregate(view_pipeline("alice")))

    assert rows == [{"_id": "a1", "user": "alice", "state": "sent", "to": "13125550199"}]
