"""Crontab expressions of DIGEST_SCHEDULE, and the fire-time arithmetic of the scheduler.

The expression is classic crontab, not APScheduler's dialect:

* weekday ``0`` and ``7`` are Sunday, ``1`` is Monday ... ``6`` Saturday; the
  names ``sun`` ... ``sat`` work too, in ranges and lists (``mon-fri``);
  APScheduler 3 numbers weekdays from Monday = 0, so the weekday field is
  translated into names here;
* when both the day of month and the weekday are restricted (neither starts
  with ``*``), a day matching *either* fires, as in cron (``0 7 1 * mon``:
  the first of the month and every Monday);
* times are wall-clock times in DIGEST_TIMEZONE. On the day clocks go back, a
  time that occurs twice fires once (the first time), unless the hour field
  is a wildcard (``*/30 * * * *`` keeps firing through the repeated hour); a
  time that does not exist on the day clocks go forward fires an hour later.

Every function returns aware datetimes in UTC, so comparisons never trip over
the ``fold`` of a repeated local time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from digest.errors import ConfigError

# Classic cron order: index = cron number (0 = Sunday).
CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# APScheduler 3 order (0 = Monday), used to write the translated field.
_APS_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ITEM = re.compile(r"^(?P<range>\*|[0-7a-z]{1,3}(?:-[0-7a-z]{1,3})?)(?:/(?P<step>\d+))?$")


class CronError(ConfigError, ValueError):
    """The expression is not a valid crontab schedule (the message says why).

    Still a ValueError, as it was before it joined the DigestError tree.
    """

    def __init__(self, message: str,
                 hint: str | None = "write five fields: minute hour day month weekday, "
                                    "e.g. '0 7 * * *' (daily at 07:00) or '30 6 * * mon'") -> None:
        super().__init__(message, hint)


@dataclass(frozen=True)
class Schedule:
    """A parsed DIGEST_SCHEDULE: the expression as written and its trigger."""

    expression: str
    timezone: tzinfo
    trigger: BaseTrigger


class WallClockCronTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler is untyped
    """CronTrigger that fires a repeated local time (clocks going back) only once.

    A plain CronTrigger fires ``30 2 * * *`` twice on such a day. With a
    wildcard hour field the repeated hour is new time and fires as usual.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        fire: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        while fire is not None and _second_of_repeated(fire) and not self._hourly():
            fire = super().get_next_fire_time(fire, fire)
        return fire

    def _hourly(self) -> bool:
        hour = next(f for f in self.fields if f.name == "hour")
        return str(hour).startswith("*")


def _second_of_repeated(moment: datetime) -> bool:
    """True for the later of two instants that share a local wall time."""
    return bool(moment.fold) and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def translate_weekdays(field: str) -> str:
    """A classic-cron weekday field as APScheduler 3 names: '1-5' -> 'mon,tue,wed,thu,fri'."""
    text = field.strip().lower()
    if text == "*":
        return "*"
    days: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if not match:
            raise CronError(f"weekday {item!r} is not a day (0-7, sun-sat), range or step")
        step = int(match.group("step") or 1)
        if step < 1:
            raise CronError(f"weekday {item!r}: a step must be 1 or more")
        part = match.group("range")
        if part == "*":
            first, last = 0, 6
        elif "-" in part:
            first, last = (_day(p) for p in part.split("-"))
            if last == 0:  # "fri-sun", "5-7", "5-0": up to Sunday at the end of the week
                last = 7
            if last < first:
                raise CronError(f"weekday range {item!r} runs backwards")
        else:
            first = _day(part)
            last = first if match.group("step") is None else 6
        days.update(day % 7 for day in range(first, last + 1, step))
    # Monday-first order so the field reads naturally in APScheduler's str().
    return ",".join(name for name in _APS_WEEKDAYS if CRON_WEEKDAYS.index(name) in days)


def _day(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if not 0 <= number <= 7:
            raise CronError(f"weekday {token} is out of range 0-7 (0 and 7 are Sunday)")
        return number
    if token in CRON_WEEKDAYS:
        return CRON_WEEKDAYS.index(token)
    raise CronError(f"weekday {token!r} is not a day name (sun, mon, tue, wed, thu, fri, sat)")


def parse_schedule(expression: str, timezone: tzinfo) -> Schedule:
    """Parse a five-field crontab expression into a trigger in `timezone`."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    common: dict[str, Any] = {"minute": minute, "hour": hour, "month": month,
                              "timezone": timezone}
    try:
        names = translate_weekdays(weekday)
        if day.startswith("*") or weekday.startswith("*"):
            trigger: BaseTrigger = WallClockCronTrigger(day=day, day_of_week=names, **common)
        else:  # cron: either the day of month or the weekday matches
            trigger = OrTrigger([WallClockCronTrigger(day=day, **common),
                                 WallClockCronTrigger(day_of_week=names, **common)])
    except CronError:
        raise
    except ValueError as exc:
        raise CronError(str(exc)) from None
    # APScheduler takes a day no month of the expression has ('31 2', '30 2', '31 4,6')
    # and never fires: the digest would silently never go out. (A leap day does fire.)
    if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=timezone)) is None:
        raise CronError(f"it never fires: no month in '{month}' has a day '{day}'")
    return Schedule(" ".join(fields), timezone, trigger)


def next_fire(trigger: BaseTrigger, after: datetime) -> datetime | None:
    """The first fire time at or after `after` (whole seconds), in UTC."""
    fire = trigger.get_next_fire_time(None, after.astimezone(zone_of(trigger)))
    return None if fire is None else _utc(fire)


def fire_times(trigger: BaseTrigger, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time t with start <= t < end, in UTC (keep the span short for busy schedules)."""
    found: list[datetime] = []
    # Fire times go back into the trigger in its own zone, as APScheduler does: given
    # a previous fire time in another zone, CronTrigger can return it again.
    fire = trigger.get_next_fire_time(None, start.astimezone(zone_of(trigger)))
    while fire is not None and fire.astimezone(UTC) < end.astimezone(UTC):
        found.append(_utc(fire))
        fire = trigger.get_next_fire_time(fire, fire)
    return found


def zone_of(trigger: BaseTrigger) -> tzinfo:
    """The time zone a trigger computes in (the first one's, for a combination)."""
    while isinstance(trigger, OrTrigger):
        trigger = trigger.triggers[0]
    zone = getattr(trigger, "timezone", None)
    return zone if isinstance(zone, tzinfo) else UTC


def last_fire_before(trigger: BaseTrigger, now: datetime, since: datetime) -> datetime | None:
    """The latest fire time t with since < t < now, in UTC; None if there is none.

    Triggers only compute forward, so this looks back over growing windows:
    a frequent schedule is found in a short one, a weekly one after a few
    doublings, and no window holds more than a few fire times.
    """
    now = now.astimezone(UTC)
    floor = since.astimezone(UTC) + timedelta(microseconds=1)
    span = timedelta(minutes=1)
    while True:
        start = max(floor, now - span)
        found = fire_times(trigger, start, now)
        if found:
            return found[-1]
        if start <= floor:
            return None
        span *= 2


@dataclass(frozen=True)
class Missed:
    """A fire time that passed while the service was not running."""

    due: datetime  # UTC
    late_by: timedelta
    within_grace: bool


def missed_run(last_run: datetime | None, trigger: BaseTrigger, now: datetime,
               grace: timedelta) -> Missed | None:
    """The run missed since `last_run`, if any: the latest fire time after it and before now.

    Only the latest counts (missed runs coalesce into one). It is still due
    when it is at most `grace` late; otherwise it is skipped. Without a
    `last_run` (the very first start) nothing was missed.
    """
    if last_run is None:
        return None
    due = last_fire_before(trigger, now, last_run)
    if due is None:
        return None
    late_by = now.astimezone(UTC) - due
    return Missed(due, late_by, late_by <= grace)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
