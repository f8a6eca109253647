"""Delivery times in the subscriber's own zone, across daylight-saving changes and week boundaries."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from digest.deliver.schedule import InvalidSchedule, Schedule, describe, digest_date_for, next_slot, validated
from digest.models import Cadence


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_daily_slot_keeps_its_local_hour_across_the_spring_change() -> None:
    berlin = Schedule(Cadence.DAILY, 7, "Europe/Berlin")
    before = next_slot(berlin, at("2026-03-27T12:00"))
    after = next_slot(berlin, at("2026-03-28T12:00"))
    assert before is not None and after is not None
    assert before.due_at == at("2026-03-28T06:00")  # 07:00 CET
    assert after.due_at == at("2026-03-29T05:00")  # 07:00 CEST, the first day of summer time
    assert (before.digest_date, after.digest_date) == (date(2026, 3, 28), date(2026, 3, 29))


def test_an_hour_that_does_not_exist_that_night_is_delivered_just_after_the_gap() -> None:
    slot = next_slot(Schedule(Cadence.DAILY, 2, "Europe/Berlin"), at("2026-03-28T12:00"))
    assert slot is not None
    assert slot.due_at == at("2026-03-29T01:00")  # 03:00 CEST: the clocks jump from 02:00 to 03:00


def test_the_slot_is_strictly_after_the_given_moment() -> None:
    utc = Schedule(Cadence.DAILY, 6, "UTC")
    slot = next_slot(utc, at("2026-11-23T06:00"))
    assert slot is not None and slot.due_at == at("2026-11-24T06:00")


def test_weekly_waits_for_the_chosen_weekday_and_paused_never_comes() -> None:
    wednesdays = Schedule(Cadence.WEEKLY, 9, "America/New_York", weekly_day=2)
    slot = next_slot(wednesdays, at("2026-11-23T20:00"))  # a Monday
    assert slot is not None
    assert slot.due_at == at("2026-11-25T14:00")  # 09:00 EST on Wednesday
    assert slot.digest_date.weekday() == 2
    assert next_slot(Schedule(Cadence.PAUSED, 9, "UTC"), at("2026-11-23T20:00")) is None


def test_the_digest_date_is_the_subscribers_local_date() -> None:
    auckland = Schedule(Cadence.DAILY, 6, "Pacific/Auckland")
    slot = next_slot(auckland, at("2026-11-23T12:00"))
    assert slot is not None
    assert slot.due_at == at("2026-11-23T17:00")  # 06:00 NZDT on the 24th
    assert slot.digest_date == date(2026, 11, 24)
    assert digest_date_for(auckland, slot.due_at) == date(2026, 11, 24)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("hourly", 7, "UTC"), "cadence"),
        (("daily", 24, "UTC"), "send_hour"),
        (("daily", "seven", "UTC"), "send_hour"),
        (("daily", 7, "Mars/Olympus_Mons"), "timezone"),
        (("daily", 7, "../../etc/passwd"), "timezone"),
        (("weekly", 7, "UTC", 7), "weekly_day"),
    ],
)
def test_a_bad_schedule_names_the_field(args: tuple[object, ...], field: str) -> None:
    with pytest.raises(InvalidSchedule) as error:
        validated(*args)  # type: ignore[arg-type]
    assert error.value.field == field
    assert str(args[{"cadence": 0, "send_hour": 1, "timezone": 2, "weekly_day": 3}[field]]) in str(
        error.value
    )


def test_a_valid_schedule_is_described_in_words() -> None:
    assert describe(validated("weekly", "8", " Europe/Paris ", "4")) == "every Friday at 08:00 Europe/Paris"
    assert describe(validated("DAILY", 7, "Asia/Tokyo")) == "every day at 07:00 Asia/Tokyo"
    assert describe(validated("paused", 7, "UTC")) == "paused"
