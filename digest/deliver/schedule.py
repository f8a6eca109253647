"""When each subscriber's next digest is due, in their own time zone.

Schedules are kept as a local hour and an IANA zone rather than a UTC hour, so a digest set for 7:00 in
Berlin stays at 7:00 across daylight-saving changes. Only the resulting UTC instant is stored, on the
subscriber row, where the beat's claim query can find due subscribers through an index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from digest.models import Cadence

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class InvalidSchedule(ValueError):
    """A schedule a person asked for that cannot work; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Schedule:
    cadence: Cadence
    send_hour: int
    timezone: str
    weekly_day: int = 0


def schedule_of(subscriber: Any) -> Schedule:
    """The schedule of a subscriber row (or a selected row with the same columns). A subscriber made in
    this transaction has no column defaults yet, so those are filled in here the way the table would."""
    return Schedule(
        Cadence(subscriber.cadence or Cadence.DAILY),
        subscriber.send_hour if subscriber.send_hour is not None else 6,
        subscriber.timezone or "UTC",
        subscriber.weekly_day or 0,
    )


@dataclass(frozen=True)
class Slot:
    """One delivery: the UTC moment it is due and the subscriber's local date it is for."""

    due_at: datetime
    digest_date: date


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            "timezone", f"{name!r} is not an IANA time zone such as Europe/Berlin"
        ) from None


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def validated(cadence: str, send_hour: int | str, timezone: str, weekly_day: int | str = 0) -> Schedule:
    try:
        kind = Cadence(str(cadence).strip().lower())
    except ValueError:
        raise InvalidSchedule("cadence", f"must be daily, weekly or paused, not {cadence!r}") from None
    try:
        hour = int(send_hour)
    except (TypeError, ValueError):
        raise InvalidSchedule("send_hour", f"must be a whole hour from 0 to 23, not {send_hour!r}") from None
    if not 0 <= hour <= 23:
        raise InvalidSchedule("send_hour", f"must be a whole hour from 0 to 23, not {hour}")
    try:
        day = int(weekly_day)
    except (TypeError, ValueError):
        raise InvalidSchedule("weekly_day", f"must be 0 (Monday) to 6 (Sunday), not {weekly_day!r}") from None
    if not 0 <= day <= 6:
        raise InvalidSchedule("weekly_day", f"must be 0 (Monday) to 6 (Sunday), not {day}")
    name = timezone.strip()
    if len(name) > 64 or name not in known_timezones():
        raise InvalidSchedule("timezone", f"{name[:70]!r} is not an IANA time zone such as Europe/Berlin")
    return Schedule(kind, hour, name, day)


def _local_moment(day: date, hour: int, tz: ZoneInfo) -> datetime:
    """`hour` o'clock on `day` in `tz`. With fold=0 (PEP 495) a wall time that the spring change skips
    maps to the instant the clocks jump, and one the autumn change repeats maps to its first occurrence."""
    return datetime.combine(day, time(hour), tzinfo=tz)


def next_slot(schedule: Schedule, after: datetime) -> Slot | None:
    """The first delivery strictly after `after`, or None when the subscriber has paused."""
    if schedule.cadence is Cadence.PAUSED:
        return None
    tz = zone(schedule.timezone)
    local_day = after.astimezone(tz).date()
    for offset in range(0, 9):
        day = local_day + timedelta(days=offset)
        if schedule.cadence is Cadence.WEEKLY and day.weekday() != schedule.weekly_day:
            continue
        moment = _local_moment(day, schedule.send_hour, tz)
        if moment > after:
            return Slot(moment.astimezone(UTC), day)
    raise AssertionError("a daily or weekly slot always exists within 8 days")  # pragma: no cover


def digest_date_for(schedule: Schedule, due_at: datetime) -> date:
    """The local date a due moment belongs to: a 23:00 digest in Tokyo is for Tokyo's date, not UTC's."""
    return due_at.astimezone(zone(schedule.timezone)).date()


def describe(schedule: Schedule) -> str:
    if schedule.cadence is Cadence.PAUSED:
        return "paused"
    when = f"{schedule.send_hour:02d}:00 {schedule.timezone}"
    if schedule.cadence is Cadence.WEEKLY:
        return f"every {WEEKDAYS[schedule.weekly_day]} at {when}"
    return f"every day at {when}"
