"""Finance's figures of the report: cash received per day (payments the invoices took, and
payments the customers' accounts took after their invoice ended), the unapplied cash (the
customers' credit balances) and the refunds, each per currency (docs/finance.md)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.formatting import china_day
from core.models import EventKind
from core.models.ledger import LedgerView, RefundStatus
from db.tables import Account, AccountEventRow, Collections, CollectionsEventRow

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class CashDay:
    day: date
    currency: str
    payments: int
    amount: Decimal


@dataclass(frozen=True)
class Unapplied:
    currency: str
    customers: int
    balance: Decimal  # the customers' credit, of which:
    awaiting_approval: Decimal  # refunds a manager has not decided


@dataclass(frozen=True)
class Refunds:
    currency: str
    refunded: int
    amount: Decimal
    awaiting: int
    awaiting_amount: Decimal


@dataclass(frozen=True)
class Cash:
    days: list[CashDay] = field(default_factory=list)
    unapplied: list[Unapplied] = field(default_factory=list)
    refunds: list[Refunds] = field(default_factory=list)


def cash(session: Session, since: datetime | None) -> Cash:
    return Cash(_days(session, since), *_ledgers(session, since))


def _days(session: Session, since: datetime | None) -> list[CashDay]:
    """Every payment taken, by China's calendar day and currency."""
    by_invoice = select(
        CollectionsEventRow.at, CollectionsEventRow.data, Collections.currency
    ).join(Collections, Collections.invoice_id == CollectionsEventRow.invoice_id)
    by_invoice = by_invoice.where(CollectionsEventRow.kind == EventKind.PAYMENT_RECEIVED.value)
    by_account = select(AccountEventRow.at, AccountEventRow.data).where(
        AccountEventRow.kind == EventKind.CREDIT_RECEIVED.value
    )
    if since is not None:
        by_invoice = by_invoice.where(CollectionsEventRow.at >= since)
        by_account = by_account.where(AccountEventRow.at >= since)
    taken: list[tuple[datetime, str | None, str | None]] = [
        (at, data.get("amount"), currency) for at, data, currency in session.execute(by_invoice)
    ]
    taken += [
        (at, data.get("amount"), data.get("currency")) for at, data in session.execute(by_account)
    ]
    counts: dict[tuple[date, str], list[Decimal]] = defaultdict(list)
    for at, amount, currency in taken:
        if amount and currency:
            counts[(china_day(at), currency)].append(Decimal(amount))
    return [
        CashDay(day, currency, len(amounts), sum(amounts, ZERO))
        for (day, currency), amounts in sorted(counts.items())
    ]


def _ledgers(session: Session, since: datetime | None) -> tuple[list[Unapplied], list[Refunds]]:
    rows = session.scalars(select(Account.ledger)).all()  # one a customer
    balance: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    refunds: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO, ZERO])
    for stored in rows:
        ledger = LedgerView.model_validate(stored or {})
        for b in ledger.balances:
            if b.balance:
                totals = balance[b.currency]
                totals[0] += 1
                totals[1] += b.balance
                totals[2] += b.reserved
        for r in ledger.refunds:
            if r.status is RefundStatus.AWAITING_APPROVAL:
                refunds[r.currency][2] += 1
                refunds[r.currency][3] += r.amount
    # refunds made: the accounts' events (their state keeps only the latest decided)
    made = select(AccountEventRow.data).where(AccountEventRow.kind == EventKind.REFUNDED.value)
    if since is not None:
        made = made.where(AccountEventRow.at >= since)
    for data in session.scalars(made):
        if data.get("amount") and data.get("currency"):
            refunds[data["currency"]][0] += 1
            refunds[data["currency"]][1] += Decimal(data["amount"])
    return (
        [Unapplied(c, int(t[0]), t[1], t[2]) for c, t in sorted(balance.items())],
        [Refunds(c, int(t[0]), t[1], int(t[2]), t[3]) for c, t in sorted(refunds.items())],
    )
