"""The China business calendar alone: 2026's Spring Festival with its 调休 Saturdays, National Day,
business hours, and a year the package does not cover."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from activities.senders import FileOutboxSender
from core.calendar import BusinessCalendar, china, official_years
from core.models import EmailTemplate
from core.settings import Settings, SettingsError
from tests.factories import collections_for, make_email_message
from tests.test_email_activity import email_activities, send

CAL = china(date(2026, 2, 13))
HOUR = timedelta(hours=1)


def cst(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An instant given in China Standard Time."""
    return datetime(year, month, day, hour, minute, tzinfo=CAL.tz)


def local(at: datetime) -> datetime:
    return CAL.local(at).replace(tzinfo=None)


def test_spring_festival_2026_with_its_make_up_saturdays() -> None:
    worked = {d: CAL.is_working_day(d) for d in _days(date(2026, 2, 13), date(2026, 3, 1))}
    off = [d.isoformat() for d, w in worked.items() if not w]
    assert off == [f"2026-02-{n}" for n in range(15, 24)] + ["2026-03-01"]
    assert worked[date(2026, 2, 14)] and worked[date(2026, 2, 28)]  # 调休 Saturdays
    assert CAL.years == (2026,) and date(2026, 2, 14) in CAL.workdays


def test_national_day_2026() -> None:
    assert not any(CAL.is_working_day(date(2026, 10, n)) for n in range(1, 8))
    assert CAL.is_working_day(date(2026, 9, 20))  # Sunday, worked
    assert CAL.is_working_day(date(2026, 10, 10))  # Saturday, worked
    assert not CAL.is_working_day(date(2026, 9, 25))  # Mid-Autumn, a Friday


def test_next_opening() -> None:
    assert local(CAL.next_opening(cst(2026, 2, 13, 3))) == datetime(2026, 2, 13, 9)
    assert local(CAL.next_opening(cst(2026, 2, 13, 11, 30))) == datetime(2026, 2, 13, 11, 30)
    assert local(CAL.next_opening(cst(2026, 2, 13, 18))) == datetime(2026, 2, 14, 9)
    # Saturday the 14th is worked; after it the festival: the 24th opens next
    assert local(CAL.next_opening(cst(2026, 2, 14, 20))) == datetime(2026, 2, 24, 9)
    assert CAL.next_opening(cst(2026, 2, 13, 10)).tzinfo == UTC


def test_business_days_through_the_spring_festival() -> None:
    failed = cst(2026, 2, 13, 3)  # reported at 03:00: counts from the opening
    days = {n: local(CAL.add_business_days(failed, n)) for n in (0, 1, 2, 3, 7, 10)}
    assert days == {
        0: datetime(2026, 2, 13, 9),
        1: datetime(2026, 2, 14, 9),  # 调休 Saturday
        2: datetime(2026, 2, 24, 9),
        3: datetime(2026, 2, 25, 9),
        7: datetime(2026, 3, 2, 9),  # the 28th, a Saturday, was the 6th
        10: datetime(2026, 3, 5, 9),
    }
    # in opening hours the failure's hour is kept
    assert local(CAL.add_business_days(cst(2026, 2, 13, 14, 5), 1)) == datetime(2026, 2, 14, 14, 5)


def test_business_hours_across_a_weekend_and_national_day() -> None:
    opened = cst(2026, 9, 30, 16)  # the day before National Day
    assert local(CAL.add_business_hours(opened, 8 * HOUR)) == datetime(2026, 10, 8, 15)
    # 27 h = 2 (30th) + 9 (8th) + 9 (9th) + 7 on Saturday the 10th, a make-up day
    assert local(CAL.add_business_hours(opened, 27 * HOUR)) == datetime(2026, 10, 10, 16)
    # Friday evening to a Sunday that is worked (9-20)
    assert local(CAL.add_business_hours(cst(2026, 9, 18, 17), 4 * HOUR)) == datetime(
        2026, 9, 20, 12
    )
    # a target that ends with the day is due at closing time, not next morning
    assert local(CAL.add_business_hours(cst(2026, 10, 9, 9), 9 * HOUR)) == datetime(2026, 10, 9, 18)
    assert CAL.business_time(opened, cst(2026, 10, 10, 16)) == 27 * HOUR


def test_add_counts_days_as_working_days_and_the_rest_as_hours() -> None:
    recorded = cst(2026, 9, 30, 17)
    assert local(CAL.add(recorded, timedelta(days=1))) == datetime(2026, 10, 8, 17)
    assert local(CAL.add(recorded, timedelta(days=1, hours=2))) == datetime(2026, 10, 9, 10)
    assert CAL.business_length(timedelta(days=3)) == 27 * HOUR


def test_a_year_the_package_does_not_cover_counts_weekends_only() -> None:
    last = official_years()[-1]
    calendar = china(date(last, 12, 3))
    assert calendar.years == (last,) and calendar.uncovered == (last + 1,)
    uncovered = list(_days(date(last + 1, 1, 1), date(last + 1, 12, 31)))
    assert [calendar.is_working_day(d) for d in uncovered] == [d.weekday() < 5 for d in uncovered]
    assert calendar.first_uncovered(cst(last, 12, 31, 12)) is None
    assert calendar.first_uncovered(None, cst(last + 1, 1, 4, 12)) == last + 1


def test_business_hours_and_zone_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUSINESS_TIMEZONE", raising=False)  # SUITE_BEIJING_HOUR's moved zone
    settings = Settings(business_calendar=True, business_hours="10:00-17:30")
    calendar = settings.calendar(date(2026, 2, 13))
    assert calendar is not None and (calendar.opens, calendar.closes) == (time(10), time(17, 30))
    assert calendar.utc_offset == timedelta(hours=8) and calendar.zone == "Asia/Shanghai"
    assert Settings(business_calendar=False).calendar() is None
    assert Settings(business_calendar=False).case_policy().calendar is None
    with pytest.raises(ValueError, match="business_hours"):
        Settings(business_hours="18:00-09:00")
    with pytest.raises(ValueError, match="business_timezone"):
        Settings(business_timezone="Mars/Olympus")
    with pytest.raises(SettingsError, match=r"BUSINESS_TIMEZONE.*UTC offset"):
        Settings(business_calendar=True, business_timezone="Europe/Berlin").calendar(
            date(2026, 2, 13)
        )


def test_a_calendar_refuses_data_it_cannot_mean() -> None:
    with pytest.raises(ValueError, match="opens"):
        BusinessCalendar(opens=time(18), closes=time(9))
    with pytest.raises(ValueError, match="outside the covered years"):
        BusinessCalendar(years=(2026,), holidays=(date(2027, 2, 8),))


instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@given(instants, st.integers(min_value=0, max_value=60 * 60 * 200))
def test_business_hours_land_in_opening_hours_and_measure_back(at: datetime, seconds: int) -> None:
    hours = timedelta(seconds=seconds)
    due = CAL.add_business_hours(at, hours)
    assert due >= at
    assert CAL.is_open(due) or local(due).time() == CAL.closes or hours == timedelta(0)
    assert CAL.business_time(at, due) == hours


@given(instants, st.integers(min_value=0, max_value=30))
def test_business_days_land_on_working_days_in_opening_hours(at: datetime, days: int) -> None:
    due = CAL.add_business_days(at, days)
    assert CAL.is_open(due) and due >= at
    # exactly `days` working days after the day it counts from (its next opening's)
    start = local(CAL.next_opening(at)).date() + timedelta(days=1)
    assert sum(CAL.is_working_day(d) for d in _days(start, local(due).date())) == days
    assert local(due).time() == local(CAL.next_opening(at)).time()


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_the_uncovered_year_is_told_once_whichever_workflow_asks(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Every workflow that reaches the uncovered year asks, under the year's key: the email log
    sends the first and answers the others as duplicates."""
    activities = email_activities(session_factory, FileOutboxSender(tmp_path))
    key = "business-calendar/2027-not-covered"
    step = "China business calendar: chinesecalendar 1.11.0 has no official holidays for 2027"
    about_a_case = make_email_message(
        EmailTemplate.MANAGER_NEEDS_ATTENTION, key=key, extra={"step": step, "error": ""}
    )
    about_an_invoice = about_a_case.model_copy(
        update={"case": None, "collections": collections_for(EmailTemplate.COLLECTIONS_REMINDER)}
    )
    first, second = send(activities, about_a_case), send(activities, about_an_invoice)
    assert not first.duplicate and second.duplicate
    [sent] = list(tmp_path.glob("*.eml"))
    text = message_from_bytes(sent.read_bytes(), policy=policy.default).get_body(("plain",))
    assert text is not None and step in text.get_content()
