"""The report as titled tables of formatted cells: one shape for the terminal and the HTML page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.formatting import CHINA_STANDARD_TIME, duration, money
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


def span(value: timedelta | None) -> str:
    return "-" if value is None else duration(value, "en-US")


def percent(rate: Rate) -> str:
    value = rate.percent
    return "-" if value is None else f"{value}% ({rate.part}/{rate.whole})"


def day(value: datetime | None) -> str:
    return "-" if value is None else f"{value.astimezone(CHINA_STANDARD_TIME):%Y-%m-%d}"


def _clock(clock: Clock) -> list[str]:
    return [str(clock.met), str(clock.breached), percent(clock.attainment)]


def _durations(label: str, values: Durations) -> list[list[str]]:
    return [
        [f"{label}: median", span(values.median)],
        [f"{label}: 90th percentile", span(values.p90)],
    ]


SATISFACTION_COLUMNS = ["Ratings", "Average (1–5)", "Satisfied (4–5)"]


def _satisfaction(row: Satisfaction) -> list[str]:
    average = "-" if row.average is None else str(row.average)
    return [row.label, str(row.ratings), average, percent(row.satisfied)]


def sections(report: Report) -> list[Section]:
    cur = report.currency
    period = f"cases opened since {day(report.since)}" if report.since else "all cases on record"
    rated = f"since {day(report.since)}" if report.since else "at any time"
    backlog = report.backlog
    totals = [sum(row[i] for row in backlog.counts.values()) for i in range(len(backlog.buckets))]
    esc = report.escalations
    exposure = report.exposure
    return [
        Section(
            "backlog",
            "Backlog by status and age",
            ["Status", *backlog.buckets, "Total"],
            [
                [status.value, *map(str, row), str(sum(row))]
                for status, row in backlog.counts.items()
            ],
            footer=["Total", *map(str, totals), str(backlog.total)],
        ),
        Section(
            "sla",
            "SLA attainment by priority",
            [
                "Priority",
                "Cases",
                "First response target",
                "Met",
                "Breached",
                "Attained",
                "Median first response",
                "Resolution target",
                "Met",
                "Breached",
                "Attained",
            ],
            [
                [
                    row.priority.value,
                    str(row.cases),
                    span(row.first_response_target),
                    *_clock(row.first_response),
                    span(row.first_response_time.median),
                    span(row.resolution_target),
                    *_clock(row.resolution),
                ]
                for row in report.sla
            ],
            note=f"{period}; targets from the case policy; a breach is the one the case recorded",
        ),
        Section(
            "escalations",
            "Escalations to 21Vianet",
            ["Figure", "Value"],
            [
                ["Escalation rate", percent(esc.rate)],
                ["Escalations", str(esc.escalations)],
                ["Not filed in the portal yet", str(esc.awaiting_ticket)],
                ["Answered", str(esc.responses.count)],
                *_durations("21Vianet response time", esc.responses),
            ],
            note=(
                f"{period}, and escalations made since; response time: ticket recorded to "
                "21Vianet's answer"
            ),
        ),
        Section(
            "severity",
            "21Vianet response times by severity",
            ["Severity", "Target", "Answered", "Within target", "Median", "90th pct", "Awaiting"],
            [
                [
                    s.severity.value,
                    span(s.target),
                    str(s.times.count),
                    str(s.within_target),
                    span(s.times.median),
                    span(s.times.p90),
                    str(s.awaiting),
                ]
                for s in esc.by_severity
            ],
        ),
        Section(
            "closing",
            "Closing the loop",
            ["Figure", "Value"],
            [
                ["Cases closed", str(report.time_to_close.count)],
                *_durations("Time to close", report.time_to_close),
                ["Reopen rate (of resolved cases)", percent(report.reopen)],
            ],
            note="closed in the period; withdrawn cases are not counted as closed",
        ),
        Section(
            "csat-agent",
            "Customer satisfaction by agent",
            ["Agent", *SATISFACTION_COLUMNS],
            [_satisfaction(row) for row in report.csat.by_agent],
            footer=_satisfaction(report.csat.total),
            note=(
                f"ratings given {rated}, by reply or by the closing letter's links; one per "
                "case, its latest; the agent is the case's owner"
            ),
        ),
        Section(
            "csat-month",
            "Customer satisfaction by month",
            ["Month (Beijing time)", *SATISFACTION_COLUMNS],
            [_satisfaction(row) for row in report.csat.by_month],
            footer=_satisfaction(report.csat.total),
            note=f"ratings given {rated}, by the month they were given",
        ),
        Section(
            "dispute",
            "Money in dispute",
            ["Figure", "Value"],
            [
                ["Open cases disputing an amount", str(report.disputed_cases)],
                ["Disputed amount", money(report.in_dispute, cur)],
            ],
        ),
        Section(
            "receivables",
            "Receivables in collections by stage",
            ["Status", "Stage", "Invoices", "Balance"],
            [
                [r.status, r.stage, str(r.invoices), money(r.balance, cur)]
                for r in report.receivables
            ],
            footer=[
                "Total",
                "",
                str(sum(r.invoices for r in report.receivables)),
                money(report.receivable_total, cur),
            ],
            text_columns=2,
        ),
        Section(
            "aging",
            "Receivables aging: days past due",
            ["Currency", *AGING_LABELS, "Total"],
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
                "balance (invoices) of every unpaid invoice in collections, disputed ones too;"
                " days since the payment failed, in China; each currency apart"
            ),
        ),
        Section(
            "suspensions",
            "Suspended subscriptions",
            [
                "Invoice",
                "Customer",
                "Tenant",
                "Status",
                "Subscriptions",
                "Suspended",
                "Data deleted",
                "Days left",
            ],
            [
                [
                    s.invoice_id,
                    s.customer_name,
                    s.tenant_id,
                    s.status,
                    str(s.subscriptions),
                    day(s.suspended_at),
                    day(s.data_deletion_at),
                    "-" if s.days_left is None else str(s.days_left),
                ]
                for s in report.suspensions
            ],
            footer=[
                "Total",
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
            "Holds per account",
            ["Customer", "Tenant", "Suspended", "Non-payment holds", "Fraud holds", "Invoices"],
            [
                [
                    a.customer_name + (" (exempt)" if a.exempt else ""),
                    a.tenant_id,
                    str(a.suspended),
                    str(a.non_payment),
                    str(a.fraud),
                    str(a.invoices),
                ]
                for a in report.holds
            ],
            note="a subscription stays suspended while any hold is left; fraud holds are lifted "
            "only by a manager (account lift-fraud)",
            text_columns=2,
        ),
        Section(
            "exposure",
            "Exposure: owed to 21Vianet against owed by customers",
            ["Figure", "Amount"],
            [
                [
                    f"Owed to 21Vianet ({exposure.payable_invoices} unpaid invoices)",
                    money(exposure.payable, cur),
                ],
                ["  of which overdue", money(exposure.payable_overdue, cur)],
                ["  of which due within 7 days", money(exposure.payable_due_soon, cur)],
                ["Owed by customers (in collections)", money(exposure.receivable, cur)],
                ["  of which disputed", money(exposure.receivable_disputed, cur)],
                ["  of which undisputed, overdue", money(exposure.receivable_overdue, cur)],
            ],
            footer=["Net (customers owe − the partner owes)", money(exposure.net, cur)],
            note="the partner pays 21Vianet whether or not its customers pay",
        ),
        Section(
            "payables",
            "Unpaid 21Vianet invoices",
            ["Invoice", "Status", "Amount", "Due date", "Days overdue"],
            [
                [
                    p.invoice_number,
                    p.status,
                    money(p.amount, cur),
                    p.due_date.isoformat(),
                    str(p.days_overdue),
                ]
                for p in report.payables
            ],
            text_columns=2,
        ),
        *_cash(report),
    ]


def _cash(report: Report) -> list[Section]:
    """Finance's: every currency, each apart (the refunds of the period, like cash received)."""
    money_in = report.cash
    return [
        Section(
            "cash",
            "Cash received per day",
            ["Day (China)", "Currency", "Payments", "Amount"],
            [
                [d.day.isoformat(), d.currency, str(d.payments), money(d.amount, d.currency)]
                for d in money_in.days
            ],
            note="payments the invoices took, and payments after an invoice ended (credit)",
            text_columns=2,
        ),
        Section(
            "unapplied",
            "Unapplied cash (customers' credit balances)",
            ["Currency", "Customers", "Credit balance", "Of which refunds awaiting approval"],
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
            "Refunds",
            ["Currency", "Refunded", "Amount refunded", "Awaiting approval", "Amount awaiting"],
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


def heading(report: Report) -> str:
    since = f"since {day(report.since)}" if report.since else "all time"
    now = report.now.astimezone(CHINA_STANDARD_TIME)
    text = f"Billing support report · {now:%Y-%m-%d %H:%M} CST · {since}"
    if report.other_currency:
        text += (
            f" · {report.other_currency} open cases or invoices in other currencies than "
            f"{report.currency} are left out of the money figures"
        )
    return text
