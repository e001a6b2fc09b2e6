"""Money and China time as people read them: the one module the emails, the 21Vianet request, the
report, the CLI and the UI's summaries format with.

Workflows import it too (their UI details name amounts), so Babel, which only the letters need,
is loaded on first use and never inside a workflow.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel import Locale as BabelLocale

# China has kept UTC+8 without daylight saving since 1991: Asia/Shanghai needs no tz database.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")

_DATETIME_FORMAT = {
    "zh-CN": ("yyyy年M月d日 HH:mm", "（北京时间）"),
    "en-US": ("MMM d, yyyy, h:mm a", " (China Standard Time)"),
}
_DATE_FORMAT = {"zh-CN": "yyyy年M月d日", "en-US": "MMM d, yyyy"}
_DURATION_UNITS = {
    "zh-CN": (("天", "天"), ("小时", "小时"), ("分钟", "分钟")),
    "en-US": ((" day", " days"), (" hour", " hours"), (" minute", " minutes")),
}


def _decimal(amount: Decimal | int | str) -> Decimal:
    return amount if isinstance(amount, Decimal) else Decimal(str(amount))


def money(amount: Decimal | int | str, currency: str = "CNY") -> str:
    """For staff, in any language: ``¥12,340.00``, ``-¥5.00``, ``USD 12,340.00``."""
    value = _decimal(amount)
    symbol = "¥" if currency == "CNY" else f"{currency} "
    return f"{'-' if value < 0 else ''}{symbol}{abs(value):,.2f}"


class NotAnAmount(ValueError):
    """What a person typed is no amount of money (the message says why, in English for logs)."""


# a currency a person may type before or after the figures; the figures are the amount's own
_CURRENCY_MARKS = re.compile(r"^(?:[¥￥]|CNY|RMB|CN¥)?\s*(?P<figures>.*?)\s*(?:元|CNY|RMB)?$", re.I)
_FIGURES = re.compile(r"^(?P<sign>-?)(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<fen>\d+))?$")


def parse_amount(text: str) -> Decimal:
    """An amount as people type it, the inverse of `money`: ``4300``, ``4,300.00``, ``¥4,300.00``,
    ``￥4300``, ``4300 元``, full-width digits. Thousands separators must group by three; no
    exponent, no second point, no NaN. Its range and places are the model's (`Money`) to check."""
    plain = unicodedata.normalize("NFKC", text).strip().replace("，", ",").replace(" ", "")
    marked = _CURRENCY_MARKS.match(plain)
    found = _FIGURES.match(marked.group("figures") if marked else "")
    if found is None:
        raise NotAnAmount(f"not an amount: {text[:40]!r}")
    whole = found.group("whole").replace(",", "")
    fen = found.group("fen")
    return Decimal(f"{found.group('sign')}{whole}{'.' + fen if fen else ''}")


@functools.cache
def _babel_locale(locale: str) -> BabelLocale:
    from babel import Locale as BabelLocale

    # parsed once: given a string, babel looks its locale data up again on every call (10x slower)
    return BabelLocale.parse(locale.replace("-", "_"))


def localized_money(amount: Decimal | int | str, currency: str, locale: str) -> str:
    """For a customer, as their language writes it: ``¥12,340.00`` / ``CN¥12,340.00``."""
    from babel.numbers import format_currency

    return format_currency(_decimal(amount), currency, locale=_babel_locale(locale))


def aware(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    # naive datetimes in this product are UTC (SQLite hands them back without an offset)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def china_day(value: datetime) -> date:
    """The calendar day in China of a moment."""
    return aware(value).astimezone(CHINA_STANDARD_TIME).date()


def when(value: datetime | str, locale: str) -> str:
    """A moment in China Standard Time, as a reader in that locale writes it."""
    from babel.dates import format_datetime

    pattern, suffix = _DATETIME_FORMAT[locale]
    moment = format_datetime(
        aware(value), pattern, tzinfo=CHINA_STANDARD_TIME, locale=_babel_locale(locale)
    )
    return moment + suffix


def day(value: date | datetime | str, locale: str) -> str:
    """A calendar day (a due date, a moment's day in China), as that locale writes it."""
    from babel.dates import format_date

    if isinstance(value, str):
        value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    moment = china_day(value) if isinstance(value, datetime) else value
    return format_date(moment, _DATE_FORMAT[locale], locale=_babel_locale(locale))


def timestamp(value: datetime | str) -> str:
    """Locale-neutral China Standard Time, for the bilingual 21Vianet request."""
    return aware(value).astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M (UTC+8)")


def utc_minute(value: datetime | None) -> str:
    """The CLI's and the UI details' moments: ``2026-11-24 09:00 UTC``, or ``-``."""
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


def duration(value: timedelta, locale: str) -> str:
    """``1 day 4 hours`` / ``1天4小时``, to the minute."""
    units = _DURATION_UNITS[locale]
    minutes = int(abs(value).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [
        f"{count}{names[0] if count == 1 else names[1]}"
        for count, names in zip((days, hours, minutes), units, strict=True)
        if count
    ]
    if not parts:
        parts = [f"0{units[2][1]}"]
    return ("" if locale == "zh-CN" else " ").join(parts)
