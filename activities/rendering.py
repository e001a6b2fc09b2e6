"""Render the emails and the 21Vianet service request from the Jinja templates under ``templates/``.

Emails live in ``templates/email/<locale>/<name>/{subject.txt,body.txt,body.html}``; the 21Vianet
request in ``templates/vianet/``. HTML is autoescaped, text is not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale as BabelLocale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from core.models import EmailMessage, EmailTemplate, Locale

# China has kept UTC+8 without daylight saving since 1991: Asia/Shanghai needs no tz database.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")

# What each email needs in ``EmailMessage.extra``: ``due_at``, ``suspension_date`` ISO 8601;
# ``reopen_days``, ``days_left`` whole numbers; ``amount`` a decimal string in the invoice currency.
# Optional: ``question`` for the reminders (else the timeline's last question), ``follow_up`` count,
# ``action`` ("suspend" or "reactivate") for manager_partner_center_error.
EXTRA_KEYS: Mapping[EmailTemplate, frozenset[str]] = {
    EmailTemplate.INFO_REQUESTED: frozenset({"question"}),
    EmailTemplate.CASE_RESOLVED: frozenset({"reopen_days"}),
    EmailTemplate.CASE_REOPENED: frozenset({"reason"}),
    EmailTemplate.CASE_WITHDRAWN: frozenset({"reason"}),
    EmailTemplate.OWNER_SLA_REMINDER: frozenset({"clock", "due_at"}),
    EmailTemplate.MANAGER_SLA_BREACH: frozenset({"clock", "due_at"}),
    EmailTemplate.OWNER_FILE_ESCALATION: frozenset({"request_title", "request_body"}),
    EmailTemplate.OWNER_EMAIL_BOUNCED: frozenset({"bounced_address", "bounced_template", "error"}),
    EmailTemplate.OWNER_CASE_UPDATE: frozenset({"text"}),
    EmailTemplate.COLLECTIONS_PAYMENT_FAILED: frozenset({"reason"}),
    EmailTemplate.COLLECTIONS_FINAL_NOTICE: frozenset({"suspension_date"}),
    EmailTemplate.COLLECTIONS_DELETION_WARNING: frozenset({"days_left"}),
    EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED: frozenset({"amount"}),
    EmailTemplate.COLLECTIONS_REACTIVATED: frozenset({"amount"}),
    EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED: frozenset({"reason"}),
    EmailTemplate.COLLECTIONS_CLOSED: frozenset({"reason"}),
    EmailTemplate.MANAGER_PARTNER_CENTER_ERROR: frozenset({"subscription_id", "error"}),
    EmailTemplate.MANAGER_FRAUD_REPORTED: frozenset({"reason", "by"}),
    EmailTemplate.FINANCE_VIANET_INVOICE_DUE: frozenset({"days_left"}),
    EmailTemplate.MANAGER_VIANET_INVOICE_OVERDUE: frozenset({"days_overdue"}),
}

# The emails about an unpaid invoice: rendered with ``collections`` (a CollectionsView), the others
# with ``case`` (a CaseView).
COLLECTIONS_EMAILS = frozenset(
    {
        EmailTemplate.COLLECTIONS_PAYMENT_FAILED,
        EmailTemplate.COLLECTIONS_REMINDER,
        EmailTemplate.COLLECTIONS_FINAL_NOTICE,
        EmailTemplate.COLLECTIONS_SUSPENDED,
        EmailTemplate.COLLECTIONS_DELETION_WARNING,
        EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED,
        EmailTemplate.COLLECTIONS_REACTIVATED,
        EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED,
        EmailTemplate.COLLECTIONS_PROMISE_ACCEPTED,
        EmailTemplate.COLLECTIONS_CLOSED,
        EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF,
        EmailTemplate.MANAGER_PARTNER_CENTER_ERROR,
        EmailTemplate.MANAGER_FRAUD_REPORTED,
    }
)

# The partner's own invoices from 21Vianet: rendered with ``vianet_invoice`` (a VianetInvoiceView).
VIANET_INVOICE_EMAILS = frozenset(
    {EmailTemplate.FINANCE_VIANET_INVOICE_DUE, EmailTemplate.MANAGER_VIANET_INVOICE_OVERDUE}
)

_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_DATETIME_FORMAT = {
    Locale.ZH_CN: ("yyyy年M月d日 HH:mm", "（北京时间）"),
    Locale.EN_US: ("MMM d, yyyy, h:mm a", " (China Standard Time)"),
}
_DATE_FORMAT = {Locale.ZH_CN: "yyyy年M月d日", Locale.EN_US: "MMM d, yyyy"}
_DURATION_UNITS = {
    Locale.ZH_CN: (("天", "天"), ("小时", "小时"), ("分钟", "分钟")),
    Locale.EN_US: ((" day", " days"), (" hour", " hours"), (" minute", " minutes")),
}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _locale(value: str) -> Locale:
    return Locale(str(value))


@functools.cache
def _babel_locale(locale: Locale) -> BabelLocale:
    # parsed once: given a string, babel looks its locale data up again on every call (10x slower)
    return BabelLocale.parse(locale.value.replace("-", "_"))


def money(amount: Decimal | int | str, currency: str, locale: str) -> str:
    """``¥12,340.00`` (zh-CN) / ``CN¥12,340.00`` (en-US): always two decimals, from Decimal."""
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    return format_currency(value, currency, locale=_babel_locale(_locale(locale)))


def _aware(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    # naive datetimes in this product are UTC (SQLite hands them back without an offset)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def when(value: datetime | str, locale: str) -> str:
    """A moment in China Standard Time, as a reader in that locale writes it."""
    loc = _locale(locale)
    pattern, suffix = _DATETIME_FORMAT[loc]
    return (
        format_datetime(
            _aware(value), pattern, tzinfo=CHINA_STANDARD_TIME, locale=_babel_locale(loc)
        )
        + suffix
    )


def day(value: date | str, locale: str) -> str:
    """A calendar day (a due date), as a reader in that locale writes it."""
    loc = _locale(locale)
    moment = date.fromisoformat(value) if isinstance(value, str) else value
    return format_date(moment, _DATE_FORMAT[loc], locale=_babel_locale(loc))


def timestamp(value: datetime | str) -> str:
    """Locale-neutral China Standard Time, for the bilingual 21Vianet request."""
    return _aware(value).astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M (UTC+8)")


def duration(value: timedelta, locale: str) -> str:
    """``1 day 4 hours`` / ``1天4小时``, to the minute."""
    units = _DURATION_UNITS[_locale(locale)]
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
    return ("" if _locale(locale) is Locale.ZH_CN else " ").join(parts)


def _tidy(text: str) -> str:
    # conditional sections leave runs of blank lines behind; a reader wants at most one
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


class TemplateRenderer:
    """One Jinja environment over the templates directory; safe to share between threads."""

    def __init__(self, templates_dir: Path) -> None:
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            # only .html is escaped: text parts and the 21Vianet request keep the customer's words
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            money=money, when=when, day=day, duration=duration, timestamp=timestamp
        )

    def render(
        self, template: EmailTemplate, locale: Locale, context: Mapping[str, Any]
    ) -> RenderedEmail:
        """``context``: ``extra`` and ``case``, ``collections`` or ``vianet_invoice``, whichever
        the email is about."""
        subject = (
            "collections"
            if template in COLLECTIONS_EMAILS
            else "vianet_invoice"
            if template in VIANET_INVOICE_EMAILS
            else "case"
        )
        if context.get(subject) is None:
            raise ValueError(f"email {template.value} is rendered with {subject}")
        extra: Mapping[str, str] = context.get("extra", {})
        missing = EXTRA_KEYS.get(template, frozenset()) - extra.keys()
        if missing:
            raise ValueError(f"email {template.value} needs extra {', '.join(sorted(missing))}")
        # every name is always defined, so the shared layouts can ask which one this email has
        values = {
            "case": None,
            "collections": None,
            "vianet_invoice": None,
            "extra": extra,
            **context,
            "locale": locale.value,
            "template": template.value,
        }
        folder = f"email/{locale.value}/{template.value}"
        subject_line = self.env.get_template(f"{folder}/subject.txt").render(values)
        return RenderedEmail(
            subject=" ".join(subject_line.split()),
            text=_tidy(self.env.get_template(f"{folder}/body.txt").render(values)),
            html=self.env.get_template(f"{folder}/body.html").render(values),
        )

    def render_message(self, message: EmailMessage) -> RenderedEmail:
        return self.render(
            message.template,
            message.locale,
            {
                "case": message.case,
                "collections": message.collections,
                "vianet_invoice": message.vianet_invoice,
                "extra": message.extra,
            },
        )

    def render_text(self, path: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(path).render(dict(context))
