"""When an account's notices go: the first of a kind on a day at once (in business hours, with a
calendar), the others of that kind together at the next day's opening. Pure, given `now`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta

from core.calendar import BusinessCalendar
from core.formatting import CHINA_STANDARD_TIME, china_day

# without a calendar, the later notices of a day go at this hour the next day (China's)
OPENING = time(9, 0)


def notice_day(now: datetime, calendar: BusinessCalendar | None) -> date:
    """The day notices are counted by: the calendar's, else China's."""
    return calendar.local(now).date() if calendar else china_day(now)


def notice_due(
    kind: str, now: datetime, calendar: BusinessCalendar | None, last_sent: Mapping[str, str]
) -> datetime:
    """When the waiting notices of `kind` go, given the day each kind last went."""
    if last_sent.get(kind) != notice_day(now, calendar).isoformat():
        return now if calendar is None else calendar.next_opening(now)
    if calendar is None:
        tomorrow = china_day(now) + timedelta(days=1)
        return datetime.combine(tomorrow, OPENING, tzinfo=CHINA_STANDARD_TIME)
    local = calendar.local(now).date()
    return calendar.next_opening(
        datetime.combine(local + timedelta(days=1), time(0), tzinfo=calendar.tz)
    )
