"""China's working calendar as data: the business hours, the official holidays and the make-up
working days (调休) of a bounded window of years, and the pure arithmetic workflows do with it.

A process builds one (`china`) when it starts a workflow and puts it in the workflow's input: a
running workflow keeps the calendar it started with, and replays the same whatever the package on
the worker says later. Nothing here reads the clock or does I/O. Times go in and come out as aware
datetimes (UTC out); the day and the hour are read in China Standard Time, a fixed UTC+8 carried
in the data (China has had no daylight saving since 1991, and a worker's tz database cannot move
a recorded workflow's timers).

A year the package does not cover (the State Council publishes each year's schedule late in the
year before) is counted weekends-only; `uncovered` names the years of the window in that state, so
a manager can be told once.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, model_validator

# no official calendar has this many days off in a row: a bound on every walk to the next day
MAX_DAYS_OFF = 31
PACKAGE = "chinesecalendar"


class BusinessCalendar(BaseModel):
    """Working days and opening hours in one zone, for the years in `years` exactly (holidays and
    调休 as published); any other year counts Monday to Friday."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: str = "Asia/Shanghai"
    utc_offset: timedelta = timedelta(hours=8)
    opens: time = time(9)
    closes: time = time(18)
    # years whose official holidays and make-up working days are known
    years: tuple[int, ...] = ()
    # years of the window the source did not cover: weekends only there, a manager told once
    uncovered: tuple[int, ...] = ()
    holidays: tuple[date, ...] = ()  # Monday to Friday, off
    workdays: tuple[date, ...] = ()  # Saturday or Sunday, worked (调休)
    source: str = ""

    @model_validator(mode="after")
    def _sane(self) -> BusinessCalendar:
        if not self.opens < self.closes:
            raise ValueError(f"opens ({self.opens}) must be before closes ({self.closes})")
        if abs(self.utc_offset) > timedelta(hours=14):
            raise ValueError(f"utc_offset {self.utc_offset} is not an offset of any zone")
        for name, days in (("holidays", self.holidays), ("workdays", self.workdays)):
            stray = [d for d in days if d.year not in self.years]
            if stray:
                raise ValueError(f"{name}: {stray[0]} is outside the covered years")
        if len(self.holidays) > 60 * max(len(self.years), 1):
            raise ValueError("holidays: more than 60 a year is not a working calendar")
        return self

    # ----------------------------------------------------------------- days

    @property
    def tz(self) -> timezone:
        return timezone(self.utc_offset, self.zone)

    @property
    def day_length(self) -> timedelta:
        """The opening hours of one working day (what a day of a business-hours target is)."""
        return datetime.combine(date.min, self.closes) - datetime.combine(date.min, self.opens)

    def covers(self, day: date) -> bool:
        """Whether the official calendar of `day`'s year is known (else: weekends only)."""
        return day.year in self.years

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def next_working_day(self, day: date) -> date:
        """The first working day after `day`."""
        for _ in range(MAX_DAYS_OFF + 7):
            day += timedelta(days=1)
            if self.is_working_day(day):
                return day
        raise ValueError(f"no working day within {MAX_DAYS_OFF + 7} days after {day}")

    # ----------------------------------------------------------------- instants

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.tz)

    def _at(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock, self.tz).astimezone(UTC)

    def is_open(self, at: datetime) -> bool:
        local = self.local(at)
        return self.is_working_day(local.date()) and self.opens <= local.time() < self.closes

    def next_opening(self, at: datetime) -> datetime:
        """`at` itself when open, else when the next working day opens."""
        local = self.local(at)
        day = local.date()
        if self.is_working_day(day):
            if local.time() < self.opens:
                return self._at(day, self.opens)
            if local.time() < self.closes:
                return at.astimezone(UTC)
        return self._at(self.next_working_day(day), self.opens)

    def add_business_hours(self, at: datetime, hours: timedelta) -> datetime:
        """The instant `hours` of opening time after `at` (a target that ends at closing time
        is due at closing time)."""
        if hours <= timedelta(0):
            return at.astimezone(UTC)
        at, left = self.next_opening(at), hours
        while True:
            day = self.local(at).date()
            closing = self._at(day, self.closes)
            if at + left <= closing:
                return at + left
            left -= closing - at
            at = self._at(self.next_working_day(day), self.opens)

    def add_business_days(self, at: datetime, days: int) -> datetime:
        """`days` working days after the day of `at`, at its time of day; `at` moved to the
        next opening first (a failure at 03:00 counts from 09:00, one at 20:00 from tomorrow's
        opening), so the answer is always on a working day in opening hours."""
        start = self.local(self.next_opening(at))
        day = start.date()
        for _ in range(days):
            day = self.next_working_day(day)
        return self._at(day, start.time())

    def add(self, at: datetime, duration: timedelta) -> datetime:
        """A policy's duration in business time: its whole days as working days, the rest as
        opening hours ("P1D" = the next working day, same hour; "PT2H" = two opening hours)."""
        rest = duration - timedelta(days=duration.days)
        return self.add_business_hours(self.add_business_days(at, duration.days), rest)

    def business_time(self, start: datetime, end: datetime) -> timedelta:
        """The opening time between two instants."""
        total = timedelta(0)
        at = self.next_opening(start)
        while at < end:
            day = self.local(at).date()
            total += min(self._at(day, self.closes), end) - at
            at = self._at(self.next_working_day(day), self.opens)
        return total

    def business_length(self, duration: timedelta) -> timedelta:
        """A target in opening time: each day of it one working day's opening hours."""
        return self.day_length * duration.days + (duration - timedelta(days=duration.days))

    def first_uncovered(self, *instants: datetime | None) -> int | None:
        """The first year of the window's uncovered ones that any of the instants falls in."""
        hit = {self.local(at).year for at in instants if at is not None} & set(self.uncovered)
        return min(hit) if hit else None


# --------------------------------------------------------------------------- the source


def official_years() -> range:
    """The years the installed package has the State Council's schedule for."""
    from chinese_calendar import constants  # only where a calendar is built, not in workflows

    years = {d.year for d in constants.holidays}
    return range(min(years), max(years) + 1)


def china(
    today: date,
    *,
    zone: str = "Asia/Shanghai",
    opens: time = time(9),
    closes: time = time(18),
    years_ahead: int = 1,
) -> BusinessCalendar:
    """The calendar of `today`'s year and the next `years_ahead` years, from `chinesecalendar`."""
    return _china(today.year, today.year + years_ahead, zone, opens, closes)


@functools.lru_cache(maxsize=8)
def _china(first: int, last: int, zone: str, opens: time, closes: time) -> BusinessCalendar:
    import chinese_calendar

    offset = _fixed_offset(zone, first, last)
    known = official_years()
    years = tuple(y for y in range(first, last + 1) if y in known)
    holidays: list[date] = []
    workdays: list[date] = []
    for year in years:
        day = date(year, 1, 1)
        while day.year == year:
            worked = chinese_calendar.is_workday(day)
            if worked and day.weekday() >= 5:
                workdays.append(day)
            elif not worked and day.weekday() < 5:
                holidays.append(day)
            day += timedelta(days=1)
    version = _version()
    return BusinessCalendar(
        zone=zone,
        utc_offset=offset,
        opens=opens,
        closes=closes,
        years=years,
        uncovered=tuple(y for y in range(first, last + 1) if y not in known),
        holidays=tuple(holidays),
        workdays=tuple(workdays),
        source=f"{PACKAGE} {version}",
    )


def _fixed_offset(zone: str, first: int, last: int) -> timedelta:
    """The zone's one UTC offset over the window; a zone with daylight saving is refused (the
    calendar carries one offset so that no tz database update moves a running workflow)."""
    tz = ZoneInfo(zone)
    offsets = {
        datetime(year, month, 1, 12, tzinfo=tz).utcoffset()
        for year in range(first, last + 1)
        for month in range(1, 13)
    }
    if len(offsets) != 1:
        raise ValueError(f"{zone} changes its UTC offset during the year: business hours need one")
    [offset] = offsets
    assert offset is not None
    return offset


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def opening_hours(text: str) -> tuple[time, time]:
    """`"09:00-18:00"` as (opens, closes)."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{text!r} is not opening hours such as 09:00-18:00") from None
    if not start < end:
        raise ValueError(f"{text!r}: the opening must come before the closing")
    return start, end


__all__ = ["BusinessCalendar", "china", "official_years", "opening_hours"]
