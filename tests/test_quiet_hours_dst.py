"""Quiet hours across daylight-saving changes: a period that ends in the repeated hour (clocks
fall back) or in the skipped hour (clocks spring forward) ends at one instant after `now`,
in any zone. Pure: `quiet_until` and `wall_instant` with the clock as a parameter."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from riskflow.config.incidents import QuietPeriod, quiet_until, wall_instant

NEW_YORK = "America/New_York"  # 2026: springs forward 03-08 02:00, falls back 11-01 02:00
BERLIN = "Europe/Berlin"  # 2026: springs forward 03-29 02:00, falls back 10-25 03:00
SHANGHAI = "Asia/Shanghai"  # no daylight saving time


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ends(now: datetime, periods: list[QuietPeriod], zone: str) -> datetime | None:
    """`quiet_until` as a UTC instant: its answer is in `zone`, and two times of one zone
    compare by wall time (fold ignored), while `==` against another zone is False for a time
    in the repeated hour (PEP 495)."""
    end = quiet_until(now, periods, zone)
    return None if end is None else end.astimezone(UTC)


def period(start: str, end: str) -> QuietPeriod:
    return QuietPeriod(start=time.fromisoformat(start), end=time.fromisoformat(end))


def test_wall_instant_of_a_repeated_a_skipped_and_an_ordinary_time() -> None:
    ny = ZoneInfo(NEW_YORK)
    # 01:30 on 2026-11-01 is shown twice: 05:30 UTC (EDT) and 06:30 UTC (EST).
    assert wall_instant(date(2026, 11, 1), time(1, 30), ny, later=False) == utc("2026-11-01T05:30")
    assert wall_instant(date(2026, 11, 1), time(1, 30), ny, later=True) == utc("2026-11-01T06:30")
    # 02:30 on 2026-03-08 is never shown: the clock jumps from 02:00 EST to 03:00 EDT (07:00 UTC).
    for later in (False, True):
        assert wall_instant(date(2026, 3, 8), time(2, 30), ny, later=later) == utc(
            "2026-03-08T07:00"
        )
    berlin = ZoneInfo(BERLIN)
    assert wall_instant(date(2026, 3, 29), time(2, 0), berlin, later=True) == utc(
        "2026-03-29T01:00"
    )
    shanghai = ZoneInfo(SHANGHAI)
    for later in (False, True):
        assert wall_instant(date(2026, 11, 1), time(1, 30), shanghai, later=later) == utc(
            "2026-10-31T17:30"
        )


def test_a_night_ending_in_the_repeated_hour_ends_after_now_new_york() -> None:
    night = period("22:00", "01:30")
    # 01:15 EST, the second 01:15 of the night (06:15 UTC): still quiet, until the second 01:30.
    end = quiet_until(utc("2026-11-01T06:15"), [night], NEW_YORK)
    assert end is not None and end.utcoffset() == timedelta(hours=-5)  # EST: the second one
    assert ends(utc("2026-11-01T06:15"), [night], NEW_YORK) == utc("2026-11-01T06:30")
    # The first 01:15 (EDT) is quiet until the same instant: the period is one span.
    assert ends(utc("2026-11-01T05:15"), [night], NEW_YORK) == utc("2026-11-01T06:30")
    assert quiet_until(utc("2026-11-01T06:30"), [night], NEW_YORK) is None


def test_a_night_ending_in_the_repeated_hour_ends_after_now_berlin() -> None:
    night = period("22:00", "02:30")
    # 02:15 CET, the second 02:15 (01:15 UTC): quiet until 02:30 CET (01:30 UTC).
    end = quiet_until(utc("2026-10-25T01:15"), [night], BERLIN)
    assert end is not None and end.utcoffset() == timedelta(hours=1)  # CET: the second one
    assert ends(utc("2026-10-25T01:15"), [night], BERLIN) == utc("2026-10-25T01:30")
    assert ends(utc("2026-10-25T00:15"), [night], BERLIN) == utc("2026-10-25T01:30")  # CEST
    assert quiet_until(utc("2026-10-25T01:30"), [night], BERLIN) is None


def test_a_period_starting_in_the_repeated_hour_starts_at_its_first_occurrence() -> None:
    early = period("01:30", "05:00")
    assert quiet_until(utc("2026-11-01T05:29"), [early], NEW_YORK) is None  # 01:29 EDT
    # 01:15 EST comes after the first 01:30 (EDT): already quiet.
    assert ends(utc("2026-11-01T06:15"), [early], NEW_YORK) == utc("2026-11-01T10:00")


@pytest.mark.parametrize(
    ("zone", "last_before", "jump"),
    [
        (NEW_YORK, "2026-03-08T06:59", "2026-03-08T07:00"),  # 01:59 EST, then 03:00 EDT
        (BERLIN, "2026-03-29T00:59", "2026-03-29T01:00"),  # 01:59 CET, then 03:00 CEST
    ],
)
def test_the_skipped_hour_ends_and_starts_a_period_when_the_clock_jumps(
    zone: str, last_before: str, jump: str
) -> None:
    night, early = period("22:00", "02:30"), period("02:30", "06:00")
    assert ends(utc(last_before), [night], zone) == utc(jump)
    assert quiet_until(utc(jump), [night], zone) is None
    assert quiet_until(utc(last_before), [early], zone) is None
    end = quiet_until(utc(jump), [early], zone)
    assert end is not None and end.astimezone(ZoneInfo(zone)).hour == 6


def test_a_zone_without_daylight_saving_keeps_its_plain_night() -> None:
    night = period("22:00", "06:00")
    # Sunday 2026-11-01 01:15 in Shanghai (17:15 UTC the day before): quiet until 06:00 local.
    end = quiet_until(utc("2026-10-31T17:15"), [night], SHANGHAI)
    assert end is not None and end.utcoffset() == timedelta(hours=8)
    assert ends(utc("2026-10-31T17:15"), [night], SHANGHAI) == utc("2026-10-31T22:00")
    assert quiet_until(utc("2026-10-31T22:00"), [night], SHANGHAI) is None


def transitions(zone: str, year: int) -> list[datetime]:
    """The instants (UTC, to the hour) at which `zone` changes its offset in `year`."""
    tz = ZoneInfo(zone)
    at, found = datetime(year, 1, 1, tzinfo=UTC), []
    while at.year == year:
        if (at + timedelta(hours=1)).astimezone(tz).utcoffset() != at.astimezone(tz).utcoffset():
            found.append(at + timedelta(hours=1))
        at += timedelta(hours=1)
    return found


SHAPES = [
    period("22:00", "06:00"),
    period("22:00", "01:30"),
    period("22:00", "02:30"),
    period("01:30", "05:00"),
    period("02:30", "04:00"),
    period("23:30", "00:30"),
]
ZONES = [
    NEW_YORK,
    BERLIN,
    SHANGHAI,
    "Australia/Lord_Howe",  # a half-hour change
    "America/Santiago",  # changes at midnight
]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda p: f"{p.start:%H%M}-{p.end:%H%M}")
def test_every_quiet_instant_ends_once_after_now_around_each_change(
    zone: str, shape: QuietPeriod
) -> None:
    """Sweep 36 h around each change in 5-minute steps: an end is always after `now`, every
    instant before it is quiet with that same end, and the end itself is not quiet."""
    changes = transitions(zone, 2026) or [datetime(2026, 3, 29, 1, tzinfo=UTC)]
    assert zone == SHANGHAI or len(changes) == 2
    for change in changes:
        at, current = change - timedelta(hours=12), None
        while at < change + timedelta(hours=24):
            end = ends(at, [shape], zone)
            if current is not None and at < current:
                assert end == current, (zone, at, end, current)
            if end is not None:
                assert end > at, (zone, at, end)
            if end is not None and end != current:
                assert quiet_until(end, [shape], zone) is None, (zone, at, end)
                current = end
            at += timedelta(minutes=5)
