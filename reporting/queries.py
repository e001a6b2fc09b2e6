"""The manager's report: figures read from the database, exact (Decimal money, whole counts).

Flow figures (SLA attainment, escalations, time to close, reopens) cover the cases opened, or
escalated, or closed, since `since`; the rest (backlog, money, collections, exposure) is the state
as of `now`. Money is summed in Python over Decimal rows: SQLite's SUM over NUMERIC adds floats.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.formatting import china_day
from core.models import (
    CasePolicy,
    CaseStatus,
    CollectionsStatus,
    EventKind,
    HoldReason,
    Priority,
    Severity,
    VianetInvoiceStatus,
)
from db.tables import Account, Case, CaseEventRow, Collections, VianetEscalation, VianetInvoice
from reporting.cash import Cash, cash
from reporting.csat import Csat, csat
from reporting.figures import Rate

ZERO = Decimal("0.00")
FINAL_CASE_STATUSES = tuple(s.value for s in CaseStatus if s.is_final)
OPEN_COLLECTIONS = tuple(s.value for s in CollectionsStatus if not s.is_final)
# (label, upper bound of the age); the last bucket has none
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("< 1 day", timedelta(days=1)),
    ("1–3 days", timedelta(days=3)),
    ("3–7 days", timedelta(days=7)),
    ("7–14 days", timedelta(days=14)),
    ("14–30 days", timedelta(days=30)),
    ("30+ days", None),
)
DUE_SOON = timedelta(days=7)
# receivables aging: (label, most days past due in the bucket); the last bucket has no bound
AGING_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("0–30 days", 30),
    ("31–60 days", 60),
    ("61–90 days", 90),
    ("90+ days", None),
)


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Durations:
    """Median (the middle pair averaged) and 90th percentile (nearest rank) of some durations."""

    count: int = 0
    median: timedelta | None = None
    p90: timedelta | None = None

    @classmethod
    def of(cls, values: Sequence[timedelta]) -> Durations:
        if not values:
            return cls()
        ordered, n = sorted(values), len(values)
        middle = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        return cls(n, middle, ordered[math.ceil(0.9 * n) - 1])


@dataclass(frozen=True)
class Backlog:
    """Open cases (not closed or withdrawn) by status, counted per age bucket."""

    counts: dict[CaseStatus, list[int]]

    @property
    def buckets(self) -> list[str]:
        return [label for label, _ in AGE_BUCKETS]

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.counts.values())


@dataclass(frozen=True)
class Clock:
    """One SLA clock over the cases of a priority: met in time, breached, or neither yet."""

    met: int = 0
    breached: int = 0
    pending: int = 0

    @property
    def attainment(self) -> Rate:
        return Rate(self.met, self.met + self.breached)


@dataclass(frozen=True)
class SlaRow:
    priority: Priority
    cases: int
    first_response_target: timedelta
    resolution_target: timedelta
    first_response: Clock
    resolution: Clock
    first_response_time: Durations


@dataclass(frozen=True)
class SeverityResponses:
    severity: Severity
    target: timedelta
    times: Durations  # ticket recorded -> 21Vianet's answer
    within_target: int
    awaiting: int  # ticket recorded, no answer yet


@dataclass(frozen=True)
class Escalations:
    rate: Rate  # cases escalated to 21Vianet / cases opened
    escalations: int
    awaiting_ticket: int  # escalated, request not filed in the portal yet
    responses: Durations
    by_severity: list[SeverityResponses]


@dataclass(frozen=True)
class Receivable:
    status: str
    stage: str
    invoices: int
    balance: Decimal


@dataclass(frozen=True)
class Aging:
    """What customers owe in one currency, by days past due: whole China calendar days since
    the payment failed (the billing system charges on the due date)."""

    currency: str
    balances: list[Decimal]  # one a bucket of AGING_BUCKETS
    invoices: list[int]

    @property
    def buckets(self) -> list[str]:
        return [label for label, _ in AGING_BUCKETS]

    @property
    def total(self) -> Decimal:
        return sum(self.balances, ZERO)


@dataclass(frozen=True)
class Suspension:
    invoice_id: str
    customer_name: str
    tenant_id: str
    subscriptions: int
    suspended_at: datetime | None
    data_deletion_at: datetime | None
    days_left: int | None  # whole days until the data is deleted; negative once past
    status: str


@dataclass(frozen=True)
class AccountHolds:
    """A customer's account: what holds its subscriptions suspended (AccountWorkflow)."""

    tenant_id: str
    customer_name: str
    suspended: int  # subscriptions suspended now
    non_payment: int  # holds from unpaid invoices
    fraud: int  # holds only a manager lifts
    invoices: int  # invoices holding something
    exempt: bool  # the customer is exempt from suspension for non-payment


@dataclass(frozen=True)
class Payable:
    """An unpaid invoice from 21Vianet."""

    invoice_number: str
    amount: Decimal
    due_date: date
    status: str
    days_overdue: int  # whole days past the due date (China Standard Time); 0 when not yet due


@dataclass(frozen=True)
class Exposure:
    """What the partner owes 21Vianet against what its customers owe it."""

    payable: Decimal  # unpaid 21Vianet invoices
    payable_invoices: int
    payable_overdue: Decimal  # of which past the due date
    payable_due_soon: Decimal  # of which due within a week
    receivable: Decimal  # customers' balances in collections
    receivable_disputed: Decimal  # of which the customer disputes
    receivable_overdue: Decimal  # of which undisputed: the payment failed, so it is past due

    @property
    def net(self) -> Decimal:
        """Positive: customers owe the partner more than the partner owes 21Vianet."""
        return self.receivable - self.payable


@dataclass(frozen=True)
class Report:
    now: datetime
    since: datetime | None
    currency: str
    backlog: Backlog
    sla: list[SlaRow]
    escalations: Escalations
    time_to_close: Durations
    reopen: Rate  # resolved cases reopened at least once
    in_dispute: Decimal  # open cases' disputed amounts
    disputed_cases: int
    receivables: list[Receivable]
    aging: list[Aging]  # every currency, each apart
    suspensions: list[Suspension]
    holds: list[AccountHolds]
    exposure: Exposure
    payables: list[Payable]
    csat: Csat  # the ratings customers gave in the period
    cash: Cash = field(
        default_factory=Cash
    )  # finance's: cash received per day, unapplied cash, refunds
    other_currency: int = 0  # open cases and collections in other currencies, left out of money

    @property
    def receivable_total(self) -> Decimal:
        return sum((r.balance for r in self.receivables), ZERO)


# --------------------------------------------------------------------------- queries


def build_report(
    session: Session,
    *,
    now: datetime,
    since: datetime | None,
    case_policy: CasePolicy,
    currency: str = "CNY",
) -> Report:
    """Every figure of the report, read in one session."""
    opened = select(Case).where(Case.opened_at >= since) if since else select(Case)
    cases = list(session.scalars(opened))
    open_cases = list(session.scalars(select(Case).where(Case.status.not_in(FINAL_CASE_STATUSES))))
    collections = list(
        session.scalars(select(Collections).where(Collections.status.in_(OPEN_COLLECTIONS)))
    )
    disputed = [c for c in open_cases if c.currency == currency]
    owed = [c for c in collections if c.currency == currency]
    unpaid = list(
        session.scalars(
            select(VianetInvoice)
            .where(
                VianetInvoice.status != VianetInvoiceStatus.PAID.value,
                VianetInvoice.currency == currency,
            )
            .order_by(VianetInvoice.due_date, VianetInvoice.invoice_number)
        )
    )
    return Report(
        now=now,
        since=since,
        currency=currency,
        backlog=_backlog(open_cases, now),
        sla=_sla(session, cases, opened, case_policy),
        escalations=_escalations(session, cases, since, case_policy),
        time_to_close=_time_to_close(session, since),
        reopen=Rate(
            sum(1 for c in cases if c.reopen_count > 0),
            sum(1 for c in cases if c.resolved_at is not None or c.reopen_count > 0),
        ),
        in_dispute=sum((c.disputed_amount for c in disputed if c.disputed_amount > 0), ZERO),
        disputed_cases=sum(1 for c in disputed if c.disputed_amount > 0),
        receivables=_receivables(owed),
        aging=_aging(collections, now),
        suspensions=_suspensions(session, now),
        holds=_holds(session),
        exposure=_exposure(owed, unpaid, now),
        payables=[
            Payable(
                invoice_number=i.invoice_number,
                amount=i.amount,
                due_date=i.due_date,
                status=i.status,
                days_overdue=max((china_today(now) - i.due_date).days, 0),
            )
            for i in unpaid
        ],
        csat=csat(session, since),
        cash=cash(session, since),
        other_currency=len(open_cases) - len(disputed) + len(collections) - len(owed),
    )


def _backlog(open_cases: list[Case], now: datetime) -> Backlog:
    counts: dict[CaseStatus, list[int]] = {}
    for case in open_cases:
        row = counts.setdefault(CaseStatus(case.status), [0] * len(AGE_BUCKETS))
        age = now - case.opened_at
        bucket = next(i for i, (_, upto) in enumerate(AGE_BUCKETS) if upto is None or age < upto)
        row[bucket] += 1
    order = list(CaseStatus)
    return Backlog(dict(sorted(counts.items(), key=lambda item: order.index(item[0]))))


def _sla(
    session: Session, cases: list[Case], opened: Select[Case], policy: CasePolicy
) -> list[SlaRow]:
    """A clock is breached when the workflow recorded the breach (it honours pauses while waiting
    on the customer and the targets the case started with), met when it stopped without one."""
    breaches = session.execute(
        select(CaseEventRow.case_id, CaseEventRow.text).where(
            CaseEventRow.kind == EventKind.SLA_BREACHED.value,
            CaseEventRow.case_id.in_(opened.with_only_columns(Case.case_id)),
        )
    )
    breached: dict[str, set[str]] = defaultdict(set)
    for case_id, text in breaches:
        clock = "first response" if text.startswith("first response") else "resolution"
        breached[case_id].add(clock)
    rows = []
    for priority in reversed(Priority):  # the most urgent first
        mine = [c for c in cases if c.priority == priority.value]
        first = Counter(
            _clock_state(c.first_response_at, "first response" in breached[c.case_id]) for c in mine
        )
        resolution = Counter(
            _clock_state(c.resolved_at, "resolution" in breached[c.case_id]) for c in mine
        )
        targets = policy.sla[priority]
        rows.append(
            SlaRow(
                priority=priority,
                cases=len(mine),
                first_response_target=targets.first_response,
                resolution_target=targets.resolution,
                first_response=Clock(**first),
                resolution=Clock(**resolution),
                first_response_time=Durations.of(
                    [c.first_response_at - c.opened_at for c in mine if c.first_response_at]
                ),
            )
        )
    return rows


def _clock_state(met_at: datetime | None, breached: bool) -> str:
    if breached:
        return "breached"
    return "met" if met_at is not None else "pending"


def _escalations(
    session: Session, cases: list[Case], since: datetime | None, policy: CasePolicy
) -> Escalations:
    query = select(VianetEscalation)
    if since:
        query = query.where(VianetEscalation.escalated_at >= since)
    escalations = list(session.scalars(query))
    answered: dict[Severity, list[timedelta]] = defaultdict(list)
    for e in escalations:
        if e.ticket_recorded_at and e.responded_at:
            answered[Severity(e.severity)].append(e.responded_at - e.ticket_recorded_at)
    by_severity = []
    for severity in Severity:
        target = policy.vianet_response_targets[severity]
        times = answered[severity]
        by_severity.append(
            SeverityResponses(
                severity=severity,
                target=target,
                times=Durations.of(times),
                within_target=sum(1 for t in times if t <= target),
                awaiting=sum(
                    1
                    for e in escalations
                    if e.severity == severity.value and e.ticket_recorded_at and not e.responded_at
                ),
            )
        )
    return Escalations(
        rate=Rate(sum(1 for c in cases if c.escalated), len(cases)),
        escalations=len(escalations),
        awaiting_ticket=sum(1 for e in escalations if e.ticket_recorded_at is None),
        responses=Durations.of([t for times in answered.values() for t in times]),
        by_severity=by_severity,
    )


def _time_to_close(session: Session, since: datetime | None) -> Durations:
    """Opened to closed, for the cases closed in the period (withdrawn cases are not closed)."""
    query = select(Case.opened_at, Case.closed_at).where(
        Case.status == CaseStatus.CLOSED.value, Case.closed_at.is_not(None)
    )
    if since:
        query = query.where(Case.closed_at >= since)
    return Durations.of([closed - opened for opened, closed in session.execute(query) if closed])


def _receivables(owed: list[Collections]) -> list[Receivable]:
    groups: dict[tuple[str, str], list[Collections]] = defaultdict(list)
    for row in owed:
        groups[(row.status, row.stage)].append(row)
    order = [s.value for s in CollectionsStatus]
    return [
        Receivable(status, stage, len(rows), sum((r.balance for r in rows), ZERO))
        for (status, stage), rows in sorted(
            groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1])
        )
    ]


def days_past_due(first_failed_at: datetime, now: datetime) -> int:
    return max((china_today(now) - china_day(first_failed_at)).days, 0)


def aging_bucket(days: int) -> int:
    """The index in AGING_BUCKETS of an amount ``days`` past due."""
    return next(i for i, (_, most) in enumerate(AGING_BUCKETS) if most is None or days <= most)


def _aging(open_collections: list[Collections], now: datetime) -> list[Aging]:
    """Every open invoice with a balance (disputed and promised ones too: still owed), per
    currency, in Decimal."""
    balances: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO] * len(AGING_BUCKETS))
    invoices: dict[str, list[int]] = defaultdict(lambda: [0] * len(AGING_BUCKETS))
    for row in open_collections:
        if row.balance <= 0:
            continue
        bucket = aging_bucket(days_past_due(row.first_failed_at, now))
        balances[row.currency][bucket] += row.balance
        invoices[row.currency][bucket] += 1
    return [Aging(cur, balances[cur], invoices[cur]) for cur in sorted(balances)]


def _holds(session: Session) -> list[AccountHolds]:
    """Every account holding something, fraud first, then by how much it holds."""
    rows = session.scalars(select(Account).order_by(Account.account_id))
    found = []
    for row in rows:
        if not row.holds and not row.suspended_subscriptions:
            continue
        reasons = Counter(hold["reason"] for hold in row.holds)
        found.append(
            AccountHolds(
                tenant_id=row.tenant_id,
                customer_name=row.customer_name,
                suspended=len(row.suspended_subscriptions),
                non_payment=reasons[HoldReason.NON_PAYMENT.value],
                fraud=reasons[HoldReason.FRAUD.value],
                invoices=len({hold["invoice_id"] for hold in row.holds}),
                exempt=bool(row.overrides.get("exempt_from_suspension")),
            )
        )
    return sorted(found, key=lambda a: (-a.fraud, -a.suspended, a.tenant_id))


def _suspensions(session: Session, now: datetime) -> list[Suspension]:
    """Every invoice with subscriptions still suspended, whatever its status (after fraud they
    stay suspended when it is paid), soonest data deletion first."""
    rows = session.scalars(select(Collections).where(Collections.suspended_at.is_not(None)))
    found = [
        Suspension(
            invoice_id=r.invoice_id,
            customer_name=r.customer_name,
            tenant_id=r.tenant_id,
            subscriptions=len(r.suspended_subscriptions),
            suspended_at=r.suspended_at,
            data_deletion_at=r.data_deletion_at,
            days_left=(r.data_deletion_at - now).days if r.data_deletion_at else None,
            status=r.status,
        )
        for r in rows
        if r.suspended_subscriptions
    ]
    far = datetime.max.replace(tzinfo=now.tzinfo)
    return sorted(found, key=lambda s: (s.data_deletion_at or far, s.invoice_id))


def china_today(now: datetime) -> date:
    return china_day(now)


def _exposure(owed: list[Collections], unpaid: list[VianetInvoice], now: datetime) -> Exposure:
    today = china_today(now)
    soon = today + DUE_SOON
    disputed = CollectionsStatus.PAUSED_DISPUTE.value
    return Exposure(
        payable=sum((i.amount for i in unpaid), ZERO),
        payable_invoices=len(unpaid),
        payable_overdue=sum((i.amount for i in unpaid if i.due_date < today), ZERO),
        payable_due_soon=sum((i.amount for i in unpaid if today <= i.due_date <= soon), ZERO),
        receivable=sum((r.balance for r in owed), ZERO),
        receivable_disputed=sum((r.balance for r in owed if r.status == disputed), ZERO),
        receivable_overdue=sum((r.balance for r in owed if r.status != disputed), ZERO),
    )
