"""DIGEST_SCHEDULE: classic crontab weekdays, DST transitions, and the missed-run arithmetic."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.cron import (
    CronError,
    fire_times,
    last_fire_before,
    missed_run,
    next_fire,
    parse_schedule,
    translate_weekdays,
)
from digest.errors import ConfigError
from tests.conftest import make_settings

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def fires(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Fire times as local wall times in `zone`."""
    trigger = parse_schedule(expression, zone).trigger
    return [t.astimezone(zone) for t in fire_times(trigger, start, end)]


# -- weekdays ------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "days"), [
    ("0", "sun"), ("7", "sun"), ("1", "mon"), ("6", "sat"),
    ("1-5", "mon,tue,wed,thu,fri"), ("mon-fri", "mon,tue,wed,thu,fri"),
    ("5-7", "fri,sat,sun"), ("fri-sun", "fri,sat,sun"), ("sat,0", "sat,sun"),
    ("SUN", "sun"), ("*/2", "tue,thu,sat,sun"), ("1-5/2", "mon,wed,fri"), ("*", "*"),
])
def test_weekdays_are_classic_cron(field: str, days: str) -> None:
    assert translate_weekdays(field) == days


@pytest.mark.parametrize("field", ["8", "mon-", "funday", "5-1", "1-5/0", "1,,2"])
def test_bad_weekdays_are_refused(field: str) -> None:
    with pytest.raises(CronError):
        translate_weekdays(field)


def test_weekday_0_and_7_fire_on_sunday_1_on_monday() -> None:
    start = datetime(2025, 6, 1, tzinfo=UTC)  # a Sunday
    week = start + timedelta(days=7)
    for expression in ("0 7 * * 0", "0 7 * * 7", "0 7 * * sun"):
        (fire,) = fires(expression, ZoneInfo("UTC"), start, week)
        assert fire.strftime("%A %H:%M") == "Sunday 07:00"
    (monday,) = fires("0 7 * * 1", ZoneInfo("UTC"), start, week)
    assert monday.strftime("%A") == "Monday"
    weekdays = fires("30 6 * * 1-5", ZoneInfo("UTC"), start, week)
    assert [f.strftime("%a") for f in weekdays] == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def test_day_of_month_or_weekday_as_in_cron() -> None:
    start = datetime(2025, 6, 1, tzinfo=UTC)
    found = fires("0 7 1 * mon", ZoneInfo("UTC"), start, datetime(2025, 7, 1, tzinfo=UTC))
    assert [f.day for f in found] == [1, 2, 9, 16, 23, 30]  # the 1st, and every Monday


def test_a_bad_schedule_names_the_setting(tmp_path: Path) -> None:
    for value in ("0 7 * *", "61 7 * * *", "0 7 * * 9", "0 25 * * *"):
        with pytest.raises(ConfigError, match="DIGEST_SCHEDULE") as caught:
            make_settings(tmp_path, DIGEST_SCHEDULE=value)
        assert caught.value.hint and "Sunday" in caught.value.hint
    assert make_settings(tmp_path, DIGEST_SCHEDULE=" 30  6 * * mon ").digest_schedule == \
        "30 6 * * mon"



@pytest.mark.parametrize("value", ["0 7 31 2 *", "0 7 30 2 *", "0 7 31 4,6,9,11 *",
                                   "0 7 30-31 feb *"])
def test_a_schedule_that_never_fires_is_refused(tmp_path: Path, value: str) -> None:
    """`digest run` used to take it and log 'next at never'; `digest status` said the next
    digest went out 'at the start of `digest run`'. No digest ever went out."""
    with pytest.raises(ConfigError, match=r"DIGEST_SCHEDULE=.*it never fires") as caught:
        make_settings(tmp_path, DIGEST_SCHEDULE=value)
    assert caught.value.hint and "five fields" in caught.value.hint


@pytest.mark.parametrize("value", ["0 7 29 2 *", "0 7 31 2 mon", "0 7 31 * *", "0 7 31 1-2 *"])
def test_a_rare_schedule_that_fires_is_taken(tmp_path: Path, value: str) -> None:
    assert make_settings(tmp_path, DIGEST_SCHEDULE=value).digest_schedule == value

# -- daylight saving time --------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "day"), [
    (BERLIN, datetime(2025, 3, 30)),  # 02:00 -> 03:00
    (BERLIN, datetime(2025, 10, 26)),  # 03:00 -> 02:00
    (NEW_YORK, datetime(2025, 3, 9)),
    (NEW_YORK, datetime(2025, 11, 2)),
])
def test_daily_digest_fires_once_at_0700_local_on_dst_days(zone: ZoneInfo, day: datetime) -> None:
    start = (day - timedelta(days=1)).replace(tzinfo=zone)
    end = (day + timedelta(days=2)).replace(tzinfo=zone)
    found = fires("0 7 * * *", zone, start, end)
    assert [(f.date().isoformat(), f.strftime("%H:%M")) for f in found] == [
        ((day + timedelta(days=n)).date().isoformat(), "07:00") for n in (-1, 0, 1)]
    # The UTC instants are 23 or 25 hours apart across the change.
    instants = [f.astimezone(UTC) for f in found]
    gaps = {b - a for a, b in pairwise(instants)}
    assert len(gaps) == 2 and timedelta(hours=24) in gaps


def test_a_repeated_local_time_fires_once_and_a_skipped_one_an_hour_later() -> None:
    autumn = fires("30 2 * * *", BERLIN, datetime(2025, 10, 26, tzinfo=BERLIN),
                   datetime(2025, 10, 27, tzinfo=BERLIN))
    assert [f.strftime("%H:%M %Z") for f in autumn] == ["02:30 CEST"]
    spring = fires("30 2 * * *", BERLIN, datetime(2025, 3, 30, tzinfo=BERLIN),
                   datetime(2025, 3, 31, tzinfo=BERLIN))
    assert [f.strftime("%H:%M %Z") for f in spring] == ["03:30 CEST"]
    # With a wildcard hour the repeated hour is new time: it fires in both.
    repeated = fires("*/30 * * * *", BERLIN, datetime(2025, 10, 26, 2, tzinfo=BERLIN),
                     datetime(2025, 10, 26, 3, tzinfo=BERLIN))
    assert [f.strftime("%H:%M %Z") for f in repeated] == [
        "02:00 CEST", "02:30 CEST", "02:00 CET", "02:30 CET"]


# -- missed runs --------------------------------------------------------------------------


def daily_0700() -> object:
    return parse_schedule("0 7 * * *", BERLIN).trigger


def at(hour: int, minute: int = 0, day: int = 12) -> datetime:
    return datetime(2025, 5, day, hour, minute, tzinfo=BERLIN)


GRACE = timedelta(hours=1)


def test_back_within_the_grace_time_the_missed_run_is_due() -> None:
    missed = missed_run(at(7, 5, day=11), daily_0700(), at(7, 40), GRACE)
    assert missed is not None and missed.within_grace
    assert missed.due == at(7).astimezone(UTC)
    assert missed.late_by == timedelta(minutes=40)


def test_back_after_the_grace_time_it_is_skipped() -> None:
    missed = missed_run(at(7, 5, day=11), daily_0700(), at(9), GRACE)
    assert missed is not None and not missed.within_grace
    assert missed.late_by == timedelta(hours=2)


def test_nothing_missed_and_first_start() -> None:
    assert missed_run(at(6, 59), daily_0700(), at(7, 30, day=12) - timedelta(minutes=31),
                      GRACE) is None
    assert missed_run(at(7, 0, day=12), daily_0700(), at(7, 40), GRACE) is None  # ran at 07:00
    assert missed_run(None, daily_0700(), at(7, 40), GRACE) is None


def test_several_missed_runs_coalesce_into_the_latest() -> None:
    every_ten = parse_schedule("*/10 * * * *", BERLIN).trigger
    missed = missed_run(at(6), every_ten, at(8, 5), GRACE)
    assert missed is not None and missed.due == at(8).astimezone(UTC)
    assert missed.within_grace


def test_long_downtime_is_computed_quickly() -> None:
    began = time.monotonic()
    weekly = parse_schedule("0 7 * * 1", BERLIN).trigger
    missed = missed_run(at(7, day=12) - timedelta(days=400), weekly, at(9, day=14), GRACE)
    assert missed is not None and missed.due == at(7, day=12).astimezone(UTC)
    minutely = parse_schedule("* * * * *", BERLIN).trigger
    assert last_fire_before(minutely, at(9, 0), at(9) - timedelta(days=400)) == \
        at(8, 59).astimezone(UTC)
    assert time.monotonic() - began < 2


def test_next_fire_is_at_or_after() -> None:
    assert next_fire(daily_0700(), at(7)) == at(7).astimezone(UTC)
    assert next_fire(daily_0700(), at(7, 1)) == at(7, day=13).astimezone(UTC)
