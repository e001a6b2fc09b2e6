"""The report as titled tables of formatted cells: one shape for the terminal and the HTML page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.formatting import CHINA_STANDARD_TIME, duration, money, when
from reporting.csat import Satisfaction
from reporting.figures import Rate
from reporting.queries import AGING_BUCKETS, Clock, Durations, Report

AGING_LABELS = [label for label, _ in AGING_BUCKETS]


@dataclass(frozen=True)
class Section:
    key: str  # names the chart that goes with it on the HTML page
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    footer: list[str] = field(default_factory=list)  # a totals row, set apart
    text_columns: int = 1  # the leading columns that name things; the figures after them


@dataclass(frozen=True)
class Words:
    """The language the report is read in: its English texts translated (the workspace's
    catalog), its durations and moments written in `locale`."""

    gettext: Callable[[str], str] = str
    locale: str = "en-US"


ENGLISH = Words()  # the CLI's and the HTML file's


def span(value: timedelta | None, words: Words = ENGLISH) -> str:
    return "-" if value is None else duration(value, words.locale)


def percent(rate: Rate) -> str:
    value = rate.percent
    return "-" if value is None else f"{value}% ({rate.part}/{rate.whole})"


def day(value: datetime | None) -> str:
    return "-" if value is None else f"{value.astimezone(CHINA_STANDARD_TIME):%Y-%m-%d}"


def _clock(clock: Clock) -> list[str]:
    return [str(clock.met), str(clock.breached), percent(clock.attainment)]


def _durations(label: str, values: Durations, words: Words = ENGLISH) -> list[list[str]]:
    t = words.gettext
    return [
        [t("%(figure)s: median") % {"figure": label}, span(values.median, words)],
        [t("%(figure)s: 90th percentile") % {"figure": label}, span(values.p90, words)],
    ]


SATISFACTION_COLUMNS = ["Ratings", "Average (1–5)", "Satisfied (4–5)"]


def _satisfaction(row: Satisfaction, t: Callable[[str], str] = str) -> list[str]:
    average = "-" if row.average is None else str(row.average)
    return [t(row.label), str(row.ratings), average, percent(row.satisfied)]


def sections(report: Report, words: Words = ENGLISH) -> list[Section]:
    cur = report.currency
    t = words.gettext
    since = {"day": day(report.since)}
    period = t("cases opened since %(day)s") % since if report.since else t("all cases on record")
    rated = t("since %(day)s") % since if report.since else t("at any time")
    backlog = report.backlog
    totals = [sum(row[i] for row in backlog.counts.values()) for i in range(len(backlog.buckets))]
    esc = report.escalations
    exposure = report.exposure
    return [
        Section(
            "backlog",
            t("Backlog by status and age"),
            [t("Status"), *map(t, backlog.buckets), t("Total")],
            [
                [t(status.value), *map(str, row), str(sum(row))]
                for status, row in backlog.counts.items()
            ],
            footer=[t("Total"), *map(str, totals), str(backlog.total)],
        ),
        Section(
            "sla",
            t("SLA attainment by priority"),
            [
                t("Priority"),
                t("Cases"),
                t("First response target"),
                t("Met"),
                t("Breached"),
                t("Attained"),
                t("Median first response"),
                t("Resolution target"),
                t("Met"),
                t("Breached"),
                t("Attained"),
            ],
            [
                [
                    t(row.priority.value),
                    str(row.cases),
                    span(row.first_response_target, words),
                    *_clock(row.first_response),
                    span(row.first_response_time.median, words),
                    span(row.resolution_target, words),
                    *_clock(row.resolution),
                ]
                for row in report.sla
            ],
            note=t(
                "%(period)s; targets from the case policy; a breach is the one the case recorded"
            )
            % {"period": period},
        ),
        Section(
            "escalations",
            t("Escalations to 21Vianet"),
            [t("Figure"), t("Value")],
            [
                [t("Escalation rate"), percent(esc.rate)],
                [t("Escalations"), str(esc.escalations)],
                [t("Not filed in the portal yet"), str(esc.awaiting_ticket)],
                [t("Answered"), str(esc.responses.count)],
                *_durations(t("21Vianet response time"), esc.responses, words),
            ],
            note=(
                t(
                    "%(period)s, and escalations made since; response time: ticket recorded to "
                    "21Vianet's answer"
                )
                % {"period": period}
            ),
        ),
        Section(
            "severity",
            t("21Vianet response times by severity"),
            [
                t("Severity"),
                t("Target"),
                t("Answered"),
                t("Within target"),
                t("Median"),
                t("90th pct"),
                t("Awaiting"),
            ],
            [
                [
                    s.severity.value,
                    span(s.target, words),
                    str(s.times.count),
                    str(s.within_target),
                    span(s.times.median, words),
                    span(s.times.p90, words),
                    str(s.awaiting),
                ]
                for s in esc.by_severity
            ],
        ),
        Section(
            "closing",
            t("Closing the loop"),
            [t("Figure"), t("Value")],
            [
                [t("Cases closed"), str(report.time_to_close.count)],
                *_durations(t("Time to close"), report.time_to_close, words),
                [t("Reopen rate (of resolved cases)"), percent(report.reopen)],
            ],
            note=t("closed in the period; withdrawn cases are not counted as closed"),
        ),
        Section(
            "csat-agent",
            t("Customer satisfaction by agent"),
            [t("Agent"), *map(t, SATISFACTION_COLUMNS)],
            [_satisfaction(row, t) for row in report.csat.by_agent],
            footer=_satisfaction(report.csat.total, t),
            note=(
                t(
                    "ratings given %(rated)s, by reply or by the closing letter's links; one per "
                    "case, its latest; the agent is the case's owner"
                )
                % {"rated": rated}
            ),
        ),
        Section(
            "csat-month",
            t("Customer satisfaction by month"),
            [t("Month (Beijing time)"), *map(t, SATISFACTION_COLUMNS)],
            [_satisfaction(row, t) for row in report.csat.by_month],
            footer=_satisfaction(report.csat.total, t),
            note=t("ratings given %(rated)s, by the month they were given") % {"rated": rated},
        ),
        Section(
            "dispute",
            t("Money in dispute"),
            [t("Figure"), t("Value")],
            [
                [t("Open cases disputing an amount"), str(report.disputed_cases)],
                [t("Disputed amount"), money(report.in_dispute, cur)],
            ],
        ),
        Section(
            "receivables",
            t("Receivables in collections by stage"),
            [t("Status"), t("Stage"), t("Invoices"), t("Balance")],
            [
                [t(r.status), t(r.stage), str(r.invoices), money(r.balance, cur)]
                for r in report.receivables
            ],
            footer=[
                t("Total"),
                "",
                str(sum(r.invoices for r in report.receivables)),
                money(report.receivable_total, cur),
            ],
            text_columns=2,
        ),
        Section(
            "aging",
            t("Receivables aging: days past due"),
            [t("Currency"), *map(t, AGING_LABELS), t("Total")],
            [
                [
                    a.currency,
                    *(
                        f"{money(b, a.currency)} ({n})"
                        for b, n in zip(a.balances, a.invoices, strict=True)
                    ),
                    f"{money(a.total, a.currency)} ({sum(a.invoices)})",
                ]
                for a in report.aging
            ],
            note=(
                t(
                    "balance (invoices) of every unpaid invoice in collections, disputed ones too;"
                    " days since the payment failed, in China; each currency apart"
                )
            ),
        ),
        Section(
            "suspensions",
            t("Suspended subscriptions"),
            [
                t("Invoice"),
                t("Customer"),
                t("Tenant"),
                t("Status"),
                t("Subscriptions"),
                t("Suspended"),
                t("Data deleted"),
                t("Days left"),
            ],
            [
                [
                    s.invoice_id,
                    s.customer_name,
                    s.tenant_id,
                    t(s.status),
                    str(s.subscriptions),
                    day(s.suspended_at),
                    day(s.data_deletion_at),
                    "-" if s.days_left is None else str(s.days_left),
                ]
                for s in report.suspensions
            ],
            footer=[
                t("Total"),
                "",
                "",
                "",
                str(sum(s.subscriptions for s in report.suspensions)),
                "",
                "",
                "",
            ],
            text_columns=4,
        ),
        Section(
            "holds",
            t("Holds per account"),
            [
                t("Customer"),
                t("Tenant"),
                t("Suspended"),
                t("Non-payment holds"),
                t("Fraud holds"),
                t("Invoices"),
            ],
            [
                [
                    a.customer_name + (t(" (exempt)") if a.exempt else ""),
                    a.tenant_id,
                    str(a.suspended),
                    str(a.non_payment),
                    str(a.fraud),
                    str(a.invoices),
                ]
                for a in report.holds
            ],
            note=t(
                "a subscription stays suspended while any hold is left; fraud holds are lifted "
                "only by a manager (account lift-fraud)"
            ),
            text_columns=2,
        ),
        Section(
            "exposure",
            t("Exposure: owed to 21Vianet against owed by customers"),
            [t("Figure"), t("Amount")],
            [
                [
                    t("Owed to 21Vianet (%(count)s unpaid invoices)")
                    % {"count": exposure.payable_invoices},
                    money(exposure.payable, cur),
                ],
                [t("  of which overdue"), money(exposure.payable_overdue, cur)],
                [t("  of which due within 7 days"), money(exposure.payable_due_soon, cur)],
                [t("Owed by customers (in collections)"), money(exposure.receivable, cur)],
                [t("  of which disputed"), money(exposure.receivable_disputed, cur)],
                [t("  of which undisputed, overdue"), money(exposure.receivable_overdue, cur)],
            ],
            footer=[t("Net (customers owe − the partner owes)"), money(exposure.net, cur)],
            note=t("the partner pays 21Vianet whether or not its customers pay"),
        ),
        Section(
            "payables",
            t("Unpaid 21Vianet invoices"),
            [t("Invoice"), t("Status"), t("Amount"), t("Due date"), t("Days overdue")],
            [
                [
                    p.invoice_number,
                    t(p.status),
                    money(p.amount, cur),
                    p.due_date.isoformat(),
                    str(p.days_overdue),
                ]
                for p in report.payables
            ],
            text_columns=2,
        ),
        *_cash(report, t),
    ]


def _cash(report: Report, t: Callable[[str], str]) -> list[Section]:
    """Finance's: every currency, each apart (the refunds of the period, like cash received)."""
    money_in = report.cash
    return [
        Section(
            "cash",
            t("Cash received per day"),
            [t("Day (China)"), t("Currency"), t("Payments"), t("Amount")],
            [
                [d.day.isoformat(), d.currency, str(d.payments), money(d.amount, d.currency)]
                for d in money_in.days
            ],
            note=t("payments the invoices took, and payments after an invoice ended (credit)"),
            text_columns=2,
        ),
        Section(
            "unapplied",
            t("Unapplied cash (customers' credit balances)"),
            [
                t("Currency"),
                t("Customers"),
                t("Credit balance"),
                t("Of which refunds awaiting approval"),
            ],
            [
                [
                    u.currency,
                    str(u.customers),
                    money(u.balance, u.currency),
                    money(u.awaiting_approval, u.currency),
                ]
                for u in money_in.unapplied
            ],
        ),
        Section(
            "refunds",
            t("Refunds"),
            [
                t("Currency"),
                t("Refunded"),
                t("Amount refunded"),
                t("Awaiting approval"),
                t("Amount awaiting"),
            ],
            [
                [
                    r.currency,
                    str(r.refunded),
                    money(r.amount, r.currency),
                    str(r.awaiting),
                    money(r.awaiting_amount, r.currency),
                ]
                for r in money_in.refunds
            ],
        ),
    ]


def heading(report: Report, words: Words = ENGLISH) -> str:
    t = words.gettext
    since = t("since %(day)s") % {"day": day(report.since)} if report.since else t("all time")
    now = report.now.astimezone(CHINA_STANDARD_TIME)
    # the CLI's and the file's stamp as they were; a reader's own language writes it its way
    stamp = f"{now:%Y-%m-%d %H:%M} CST" if words is ENGLISH else when(now, words.locale)
    text = t("Billing support report · %(now)s · %(since)s") % {"now": stamp, "since": since}
    if report.other_currency:
        text += t(
            " · %(count)s open cases or invoices in other currencies than %(currency)s are left "
            "out of the money figures"
        ) % {"count": report.other_currency, "currency": report.currency}
    return text
