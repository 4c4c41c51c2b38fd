"""A campaign's progress: buckets, the end of a campaign, and its ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobs.rules.progress import delivery_rate, eta, progress
from jobs.rules.quiet_hours import Window

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # 10:00 in New York, 07:00 in Seattle
SEATTLE, NEW_YORK = "12065550101", "12125550101"


def test_states_fall_in_buckets_and_new_states_in_other() -> None:
    prog = progress(
        {"sent": 3, "delivered": 2, "undelivered": 1, "failed": 1, "rejected": 1, "queued": 4,
         "sending": 1, "unknown": 1, "cancelled": 2},
        "expanded",
    )  # fmt: skip
    assert prog.counts == {
        "sent": 3, "delivered": 2, "failed": 2, "rejected": 1, "waiting": 5, "cancelled": 2,
        "other": 1,
    }  # fmt: skip
    assert prog.total == 16 and prog.finished == 11 and not prog.done


def test_a_cancelled_campaign_ends_cancelled_not_done() -> None:
    stopped = progress({"sent": 2, "cancelled": 3}, "cancelled")
    assert (stopped.done, stopped.ended, stopped.counts["cancelled"]) == (True, "cancelled", 3)
    assert progress({}, "cancelled").ended == "cancelled"  # cancelled before its fan-out
    assert progress({"sent": 2, "cancelled": 1}, "expanded").ended == "cancelled"  # after it
    assert progress({"sent": 2}, "expanded").ended == "done"
    assert progress({"sent": 1, "sending": 1}, "cancelled").ended is None  # one still in flight


def test_a_campaign_is_done_once_it_fanned_out_and_nothing_waits() -> None:
    assert progress({"sent": 2}, "expanded").done
    assert not progress({"sent": 2}, "sending").done  # still fanning out
    assert not progress({}, "new").done
    assert progress({}, "rejected").done  # e.g. no_recipients
    assert progress({}, "rejected").fraction == 1.0


def test_delivery_rate_counts_only_final_receipts() -> None:
    assert delivery_rate({"sent": 10}) is None
    assert delivery_rate({"sent": 5, "delivered": 3, "undelivered": 1}) == 0.75


def test_eta_follows_the_account_rate() -> None:
    waiting = [(NOW, NEW_YORK)] * 50
    assert eta(NOW, waiting, 5, None) == NOW + timedelta(seconds=10)
    assert eta(NOW, [], 5, None) is None
    assert eta(NOW, waiting, None, None) == NOW


def test_eta_waits_for_due_times_and_the_recipients_quiet_hours() -> None:
    later = NOW + timedelta(minutes=30)
    assert eta(NOW, [(later, NEW_YORK)], 5, None) == later + timedelta(seconds=0.2)
    # 07:00 in Seattle: its messages wait until 08:00 there, an hour from now.
    finish = eta(NOW, [(NOW, NEW_YORK), (NOW, SEATTLE)], 5, Window())
    assert finish == NOW + timedelta(hours=1, seconds=0.2)
