"""What operators read about a campaign: the ETA of one still being fanned out, and campaigns
cancelled before any daemon saw them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from jobs.mongo import reports
from scheduler.surfaces import watch

NOW = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)
Db = Database[dict[str, Any]]


def _people(db: Db, verified: int) -> None:
    db["users"].insert_many(
        [{"phone": f"1206555{n:04d}", "verified": True} for n in range(verified)]
    )
    db["users"].insert_one({"phone": "12065559999", "verified": True, "opted_out": {"at": NOW}})


def _child(db: Db, campaign: str, number: str) -> None:
    doc = {"_id": f"{campaign}:{number}", "kind": "message", "campaign": campaign,
           "state": "queued", "to": number, "due_at": NOW}  # fmt: skip
    db["outbox"].insert_one(doc)
    db["message_status"].insert_one(doc)


def test_the_eta_of_a_broadcast_being_fanned_out_counts_the_messages_not_made_yet(db: Db) -> None:
    _people(db, 10)
    db["message_status"].insert_one(
        {"_id": "c1", "kind": "broadcast", "state": "sending", "created_at": NOW}
    )
    for n in range(2):
        _child(db, "c1", f"1206555{n:04d}")

    counts = reports.campaign(db, "c1", NOW)
    assert len(counts.waiting_due) == 10  # 2 made, 8 to come; the opted-out person is not
    view = watch.summary(counts, NOW, 5, None)
    assert view["eta"] == NOW + timedelta(seconds=2) and view["total"] == 2

    db["message_status"].update_one({"_id": "c1"}, {"$set": {"state": "expanded"}})
    assert len(reports.campaign(db, "c1", NOW).waiting_due) == 2  # all of it is made


def test_a_broadcast_cancelled_before_any_daemon_saw_it_is_listed_as_cancelled(db: Db) -> None:
    campaign = ObjectId()
    db["outbox"].insert_one(
        {"_id": campaign, "user": "alice", "audience": "verified", "body": "x",
         "state": "cancelled", "cancelled": {"by": "ops", "at": NOW}}
    )  # fmt: skip
    db["outbox"].insert_one({"_id": ObjectId(), "user": "bob", "audience": "verified", "body": "y"})

    rows = {r["campaign"]: r for r in watch.campaign_rows(reports.recent_campaigns(db))}
    assert (rows[str(campaign)]["request"], rows[str(campaign)]["ended"]) == (
        "cancelled", "cancelled",
    )  # fmt: skip
    assert [r["request"] for r in rows.values()].count("new") == 1


def test_the_eta_waits_for_the_lease_of_a_claim_its_daemon_stopped_renewing(db: Db) -> None:
    lease = timedelta(seconds=120)
    db["message_status"].insert_one({"_id": "c2", "kind": "broadcast", "state": "expanded"})
    for number, lease_until in (
        ("12065550101", NOW + timedelta(seconds=100)),  # renewed 20 s ago
        ("12065550102", NOW + timedelta(seconds=30)),
    ):  # 90 s ago: dead
        doc = {"_id": f"c2:{number}", "kind": "message", "campaign": "c2", "state": "sending",
               "to": number, "lease_until": lease_until}  # fmt: skip
        db["outbox"].insert_one(doc)
        db["message_status"].insert_one(doc)

    counts = reports.campaign(db, "c2", NOW, lease)
    assert sorted(counts.waiting_due) == [
        (NOW, "12065550101"), (NOW + timedelta(seconds=30), "12065550102"),
    ]  # fmt: skip
    assert watch.summary(counts, NOW, 5, None)["eta"] == NOW + timedelta(seconds=30.2)
    assert {when for when, _ in reports.campaign(db, "c2", NOW).waiting_due} == {NOW}
