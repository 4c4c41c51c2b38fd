"""Quiet hours: a recipient is texted only inside the window in every zone they may be in."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from phonenumbers import timezone as phone_timezone

from jobs.rules.quiet_hours import (
    STRICTEST_US_ZONES,
    NoAllowedHours,
    Window,
    holds_everywhere,
    next_allowed,
    zones_for,
)

NEW_YORK = "12125550100"
LOS_ANGELES = "14155550100"
HONOLULU = "18085550100"
SOUTH_DAKOTA = "16055550100"  # Mountain in the west of the state, Central in the east
TOLL_FREE = "18005550100"
UNASSIGNED = "19995550100"
DEFAULT = Window()


def utc(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_new_york_number_before_eight_waits_until_eight_local() -> None:
    assert next_allowed(utc(2026, 1, 15, 12, 0), NEW_YORK, DEFAULT) == utc(2026, 1, 15, 13, 0)


def test_new_york_number_in_the_afternoon_may_be_texted_now() -> None:
    assert next_allowed(utc(2026, 1, 15, 15, 0), NEW_YORK, DEFAULT) is None


def test_window_start_is_inclusive() -> None:
    assert next_allowed(utc(2026, 1, 15, 13, 0), NEW_YORK, DEFAULT) is None


def test_window_end_is_exclusive_and_waits_for_the_next_morning() -> None:
    assert next_allowed(utc(2026, 1, 16, 2, 0), NEW_YORK, DEFAULT) == utc(2026, 1, 16, 13, 0)
    assert next_allowed(utc(2026, 1, 16, 1, 59, 59), NEW_YORK, DEFAULT) is None


def test_los_angeles_evening_is_allowed_while_new_york_sleeps() -> None:
    now = utc(2026, 1, 15, 3, 0)

    assert next_allowed(now, LOS_ANGELES, DEFAULT) is None
    assert next_allowed(now, NEW_YORK, DEFAULT) == utc(2026, 1, 15, 13, 0)


def test_honolulu_morning_is_ten_hours_behind_utc() -> None:
    assert zones_for(HONOLULU) == (ZoneInfo("Pacific/Honolulu"),)
    assert next_allowed(utc(2026, 1, 15, 12, 0), HONOLULU, DEFAULT) == utc(2026, 1, 15, 18, 0)
    assert next_allowed(utc(2026, 1, 15, 18, 0), HONOLULU, DEFAULT) is None


def test_area_code_spanning_two_zones_must_be_inside_both() -> None:
    assert {zone.key for zone in zones_for(SOUTH_DAKOTA)} == {
        "America/Denver",
        "America/North_Dakota/Center",
    }
    # 08:30 Central is still 07:30 Mountain; 21:30 Central would be past the end.
    assert next_allowed(utc(2026, 1, 15, 14, 30), SOUTH_DAKOTA, DEFAULT) == utc(2026, 1, 15, 15, 0)
    assert next_allowed(utc(2026, 1, 16, 3, 30), SOUTH_DAKOTA, DEFAULT) == utc(2026, 1, 16, 15, 0)
    assert next_allowed(utc(2026, 1, 16, 2, 59), SOUTH_DAKOTA, DEFAULT) is None


def test_what_phonenumbers_says_about_numbers_without_a_place() -> None:
    def names(number: str) -> tuple[str, ...]:
        return tuple(phone_timezone.time_zones_for_number(phonenumbers.parse("+" + number)))

    assert names(UNASSIGNED) == ("Etc/Unknown",)
    toll_free = names(TOLL_FREE)
    assert {"Pacific/Guam", "Pacific/Pago_Pago", "America/St_Johns"} <= set(toll_free)


@pytest.mark.parametrize("number", [UNASSIGNED, TOLL_FREE, "15005550100", "19005550100"])
def test_number_without_a_known_place_uses_the_strictest_us_zones(number: str) -> None:
    assert tuple(zone.key for zone in zones_for(number)) == STRICTEST_US_ZONES


@pytest.mark.parametrize("number", [UNASSIGNED, TOLL_FREE])
def test_unknown_place_waits_for_the_window_common_to_every_strict_zone(number: str) -> None:
    # January, in UTC: Honolulu opens last (18:00) and Puerto Rico, on UTC-4 all year, closes
    # first (01:00), an hour before New York (02:00).
    assert next_allowed(utc(2026, 1, 15, 17, 0), number, DEFAULT) == utc(2026, 1, 15, 18, 0)
    assert next_allowed(utc(2026, 1, 15, 18, 0), number, DEFAULT) is None
    assert next_allowed(utc(2026, 1, 16, 0, 59), number, DEFAULT) is None
    assert next_allowed(utc(2026, 1, 16, 1, 0), number, DEFAULT) == utc(2026, 1, 16, 18, 0)
    assert next_allowed(utc(2026, 1, 16, 2, 30), number, DEFAULT) == utc(2026, 1, 16, 18, 0)


def test_spring_forward_day_opens_at_eight_daylight_time() -> None:
    # 2026-03-08: 02:00 EST becomes 03:00 EDT, so 08:00 local is 12:00 UTC, not 13:00.
    assert next_allowed(utc(2026, 3, 8, 2, 0), NEW_YORK, DEFAULT) == utc(2026, 3, 8, 12, 0)
    assert next_allowed(utc(2026, 3, 8, 12, 0), NEW_YORK, DEFAULT) is None


def test_fall_back_day_opens_at_eight_standard_time() -> None:
    # 2026-11-01: 02:00 EDT becomes 01:00 EST, so 08:00 local is 13:00 UTC, not 12:00.
    assert next_allowed(utc(2026, 11, 1, 2, 0), NEW_YORK, DEFAULT) == utc(2026, 11, 1, 13, 0)
    assert next_allowed(utc(2026, 11, 1, 12, 30), NEW_YORK, DEFAULT) == utc(2026, 11, 1, 13, 0)


def test_start_inside_the_skipped_hour_opens_when_the_clock_jumps() -> None:
    window = Window(start=time(2, 30), end=time(5, 0))

    # 01:59:59 EST, then 03:00 EDT at 07:00 UTC: 02:30 is never shown, 03:00 is already past it.
    assert next_allowed(utc(2026, 3, 8, 6, 0), NEW_YORK, window) == utc(2026, 3, 8, 7, 0)


def test_end_inside_the_repeated_hour_reopens_when_the_clock_falls_back() -> None:
    window = Window(start=time(0, 0), end=time(1, 30))

    # 01:45 EDT is past the end; at 06:00 UTC the clock reads 01:00 EST, inside again.
    assert next_allowed(utc(2026, 11, 1, 5, 45), NEW_YORK, window) == utc(2026, 11, 1, 6, 0)


def test_start_inside_the_repeated_hour_is_reached_a_second_time() -> None:
    window = Window(start=time(1, 15), end=time(5, 0))

    # 01:15 EDT passes at 05:15 UTC; at 06:00 UTC the clock falls back to 01:00 EST, before the
    # start again, and 01:15 EST comes round at 06:15 UTC.
    assert next_allowed(utc(2026, 11, 1, 5, 30), NEW_YORK, window) is None
    assert next_allowed(utc(2026, 11, 1, 6, 0), NEW_YORK, window) == utc(2026, 11, 1, 6, 15)


def test_custom_window_is_honoured() -> None:
    window = Window(start=time(9, 0), end=time(17, 0))

    assert next_allowed(utc(2026, 1, 15, 13, 30), NEW_YORK, window) == utc(2026, 1, 15, 14, 0)
    assert next_allowed(utc(2026, 1, 15, 21, 59), NEW_YORK, window) is None
    assert next_allowed(utc(2026, 1, 15, 22, 0), NEW_YORK, window) == utc(2026, 1, 16, 14, 0)


def test_now_in_another_offset_gives_the_same_utc_answer() -> None:
    now = datetime(2026, 1, 15, 7, 0, tzinfo=timezone(timedelta(hours=-5)))

    result = next_allowed(now, NEW_YORK, DEFAULT)

    assert result == utc(2026, 1, 15, 13, 0)
    assert result is not None and result.tzinfo is UTC


@pytest.mark.parametrize(("start", "end"), [(time(21, 0), time(8, 0)), (time(9, 0), time(9, 0))])
def test_window_must_start_before_it_ends(start: time, end: time) -> None:
    with pytest.raises(ValueError, match="before its end"):
        Window(start=start, end=end)


def test_window_times_must_be_wall_clock() -> None:
    with pytest.raises(ValueError, match="wall-clock"):
        Window(start=time(8, 0, tzinfo=UTC))


def test_window_narrower_than_the_spread_of_zones_has_no_common_time() -> None:
    with pytest.raises(NoAllowedHours, match="share no"):
        next_allowed(utc(2026, 1, 15, 0, 0), UNASSIGNED, Window(time(9, 0), time(10, 0)))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_allowed(datetime(2026, 1, 15, 12, 0), NEW_YORK, DEFAULT)


@pytest.mark.parametrize("number", ["2125550100", "+12125550100", "22125550100", "1212555010x"])
def test_number_not_in_flowroute_form_is_refused(number: str) -> None:
    with pytest.raises(ValueError, match="11-digit"):
        zones_for(number)


@pytest.mark.parametrize(
    ("start", "end", "holds"),
    [
        (time(8, 0), time(21, 0), True),
        (time(9, 0), time(15, 1), True),
        (time(9, 0), time(15, 0), False),
        (time(9, 0), time(10, 0), False),
        (time(0, 0), time(6, 0), False),
    ],
)
def test_a_window_holds_everywhere_only_if_longer_than_the_zones_spread(
    start: time, end: time, holds: bool
) -> None:
    assert holds_everywhere(Window(start, end)) is holds
