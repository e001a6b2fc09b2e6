"""Bank statements as the service offers them: import one (each credit line matched to open bills
and recorded as payments through `Collections.act`, the path of `/v1/payments`), the finance queue
of lines that wait, and a one-click match that also teaches the payer's account.

A payment's id is the line's transaction reference, with the bill after it when a transfer pays
several (`icbc:…:G1001`): the collections workflow counts an id once, so importing the same
statement twice records nothing new, and a run stopped half-way makes the same payments again."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.models import CollectionsStatus, PaymentReceived
from core.models.statement import BankLayout
from core.pace import Pace
from core.settings import Settings
from db.tables import Collections as CollectionsRow
from db.tables import PayerAccount, StatementLineRow, table
from intake.matching import (
    ZERO,
    Ledger,
    Match,
    OpenBill,
    Verdict,
    Why,
    allocate,
    match,
)
from intake.statements import BUILT_IN, Rejected, StatementError, StatementLine, StatementReader
from service.calls import reading
from service.collections import Collections
from service.errors import NotFound, Refused, ServiceError, Unavailable

__all__ = ["QueueLine", "StatementAborted", "StatementError", "StatementSummary", "Statements"]

BATCH = 256  # lines matched, stored and paid together
WAITING = ("ambiguous", "unmatched", "overpaid", "refused")
FINAL = [status.value for status in CollectionsStatus if status.is_final]
MAX_REJECTIONS = 50  # kept in the summary for the screen; the rest are counted


@dataclass
class StatementSummary:
    file_name: str
    layout: str = ""
    bank: str = ""
    encoding: str = ""
    rows: int = 0  # rows read under the header
    expected_rows: int | None = None
    credits: int = 0
    debits: int = 0  # money out: not ours to match
    matched: int = 0
    overpaid: int = 0
    ambiguous: int = 0
    unmatched: int = 0
    refused: int = 0  # a payment the invoice refused (its collections ended meanwhile...)
    duplicates: int = 0  # imported before: nothing recorded again
    rejected: list[Rejected] = field(default_factory=list)
    rejected_count: int = 0
    payments: int = 0  # payment updates made
    paid: Decimal = ZERO

    @property
    def waiting(self) -> int:
        return self.ambiguous + self.unmatched + self.overpaid + self.refused


class StatementAborted(Exception):
    """Temporal or the database failed mid-import; `summary` has the counts so far; run it again
    (lines stored and not yet paid are paid then, with the same ids)."""

    def __init__(self, summary: StatementSummary, cause: BaseException) -> None:
        super().__init__(f"import stopped after {summary.rows} rows: {cause}")
        self.summary = summary


@dataclass(frozen=True)
class QueueLine:
    id: int
    reference: str
    file_name: str
    row: int
    booked_at: datetime
    amount: Decimal
    rest: Decimal
    currency: str
    payer_name: str
    payer_account: str
    remark: str
    status: str
    why: str
    refusal: str | None
    candidates: list[dict[str, str]]
    allocations: list[dict[str, str]]


def payment_id(reference: str, invoice_id: str, several: bool) -> str:
    return f"{reference}:{invoice_id}" if several else reference


def _booked(line: StatementLine, zone: ZoneInfo) -> datetime:
    moment = datetime.combine(line.booked_on, line.booked_at or time(12, 0), tzinfo=zone)
    return moment.astimezone(UTC)


def _batches(lines: Iterator[StatementLine | Rejected]) -> list[StatementLine | Rejected]:
    return list(itertools.islice(lines, BATCH))


class Statements:
    def __init__(self, settings: Settings, collections: Collections) -> None:
        self._settings = settings
        self._collections = collections
        self._zone = ZoneInfo(settings.business_timezone)

    def layouts(self) -> tuple[BankLayout, ...]:
        """Finance's mapped layouts, then the built-in banks' (StatementError-free: a broken
        settings file raises SettingsError, naming its line)."""
        return (*self._settings.bank_layouts(), *BUILT_IN)

    def reader(self, path: Path) -> StatementReader:
        """The file's layout and encoding, or StatementError saying why it is refused."""
        return StatementReader(path, self.layouts())

    def ledger(self) -> Ledger:
        """Every invoice still in collections with a balance, and the payer accounts taught."""
        with reading(self._settings.database_url) as session:
            rows = session.execute(
                select(
                    CollectionsRow.invoice_id,
                    CollectionsRow.tenant_id,
                    CollectionsRow.customer_name,
                    CollectionsRow.currency,
                    CollectionsRow.balance,
                    CollectionsRow.first_failed_at,
                ).where(CollectionsRow.status.not_in(FINAL), CollectionsRow.balance > 0)
            ).all()
            taught = session.execute(select(PayerAccount.account, PayerAccount.tenant_id))
            accounts = {account: tenant for account, tenant in taught}
        return Ledger.of((OpenBill(*row) for row in rows), accounts)

    async def import_file(
        self,
        path: Path,
        *,
        by: str,
        file_name: str | None = None,
        concurrency: int = 20,
        progress: Callable[[StatementSummary], None] | None = None,
        reader: StatementReader | None = None,
        pace: Pace | None = None,
    ) -> StatementSummary:
        """Import a statement; StatementError (before anything) when the file is refused,
        StatementAborted when Temporal or the database fails half-way."""
        if reader is None:
            reader = await asyncio.to_thread(self.reader, path)
        summary = StatementSummary(
            file_name=file_name or path.name,
            layout=reader.layout.name,
            bank=reader.layout.bank,
            encoding=reader.encoding,
            expected_rows=await asyncio.to_thread(reader.count_rows),
        )
        try:
            ledger = await asyncio.to_thread(self.ledger)
            lines = reader.lines()
            while batch := await asyncio.to_thread(_batches, lines):
                await self._batch(batch, ledger, summary, by, concurrency, pace or Pace())
                if progress is not None:
                    progress(summary)
        except (Unavailable, OSError) as err:
            raise StatementAborted(summary, err) from None
        return summary

    async def _batch(
        self,
        batch: list[StatementLine | Rejected],
        ledger: Ledger,
        summary: StatementSummary,
        by: str,
        concurrency: int,
        pace: Pace,
    ) -> None:
        credits: list[StatementLine] = []
        for item in batch:
            summary.rows += 1
            if isinstance(item, Rejected):
                summary.rejected_count += 1
                if len(summary.rejected) < MAX_REJECTIONS:
                    summary.rejected.append(item)
            elif item.is_credit:
                credits.append(item)
            else:
                summary.debits += 1
        summary.credits += len(credits)
        known = await asyncio.to_thread(self._known, [line.reference for line in credits])
        fresh: list[dict[str, Any]] = []
        for line in credits:
            if line.reference in known:
                stored = known[line.reference]
                if stored["recorded"]:
                    summary.duplicates += 1
                else:  # stored by a run that stopped: its payments are made again, same ids
                    self._count(summary, stored["status"])
                continue
            found = match(
                line.amount,
                line.currency,
                line.payer_name,
                line.payer_account,
                line.remark,
                ledger,
            )
            ledger.apply(found.allocations)
            self._count(summary, found.verdict.value)
            fresh.append(self._row(line, found, by, summary.file_name))
        if fresh:
            taken = await asyncio.to_thread(self._insert, fresh)
            if len(taken) < len(fresh):  # another import stored some first: they are its to pay
                for row in fresh:
                    if row["reference"] not in taken:
                        self._count(summary, row["status"], -1)
                        summary.duplicates += 1
                fresh = [row for row in fresh if row["reference"] in taken]
        pending = [row for row in fresh if not row["recorded"]]
        pending += [row for row in known.values() if not row["recorded"]]
        await self._pay_rows(pending, by, concurrency, summary, pace)

    @staticmethod
    def _count(summary: StatementSummary, status: str, by: int = 1) -> None:
        setattr(summary, status, getattr(summary, status) + by)

    def _row(self, line: StatementLine, found: Match, by: str, file_name: str) -> dict[str, Any]:
        several = len(found.allocations) > 1
        return {
            "reference": line.reference,
            "layout": line.reference.split(":", 1)[0],
            "file_name": file_name[:255],
            "row": line.row,
            "booked_at": _booked(line, self._zone),
            "amount": line.amount,
            "currency": line.currency,
            "payer_name": line.payer_name,
            "payer_account": line.payer_account,
            "remark": line.remark,
            "status": found.verdict.value,
            "why": found.why.value,
            "rest": found.rest,
            "allocations": [
                {
                    "invoice_id": a.invoice_id,
                    "amount": str(a.amount),
                    "payment_id": payment_id(line.reference, a.invoice_id, several),
                }
                for a in found.allocations
            ],
            "recorded": not found.allocations,
            "candidates": [
                {
                    "invoice_id": c.invoice_id,
                    "customer_name": c.customer_name,
                    "balance": str(c.balance),
                    "why": c.why.value,
                }
                for c in found.candidates
            ],
            "tenant_id": found.tenant_id,
            "imported_by": by,
        }

    def _known(self, references: list[str]) -> dict[str, dict[str, Any]]:
        if not references:
            return {}
        columns = table(StatementLineRow).c
        with reading(self._settings.database_url) as session:
            rows = session.execute(
                select(
                    columns.reference,
                    columns.recorded,
                    columns.status,
                    columns.allocations,
                    columns.booked_at,
                    columns.currency,
                    columns.rest,
                ).where(columns.reference.in_(references))
            ).all()
        return {row.reference: dict(row._mapping) for row in rows}

    def _insert(self, rows: list[dict[str, Any]]) -> set[str]:
        """Store the batch's new lines; the references stored. When another import of the same
        statement stored some of them meanwhile, one at a time, leaving those out."""
        try:
            with reading(self._settings.database_url) as session, session.begin():
                session.execute(insert(StatementLineRow), rows)
            return {row["reference"] for row in rows}
        except IntegrityError:
            pass
        taken: set[str] = set()
        for row in rows:
            try:
                with reading(self._settings.database_url) as session, session.begin():
                    session.execute(insert(StatementLineRow), [row])
                taken.add(row["reference"])
            except IntegrityError:
                continue
        return taken

    async def _pay_rows(
        self,
        rows: list[dict[str, Any]],
        by: str,
        concurrency: int,
        summary: StatementSummary,
        pace: Pace,
    ) -> None:
        """Every allocation of `rows` as a payment, `concurrency` at a time; then each row
        recorded (or refused, with why). Unavailable stops the import: rows stay unrecorded."""
        gate = asyncio.Semaphore(concurrency)

        async def pay(row: dict[str, Any], allocation: dict[str, str]) -> str | None:
            async with gate:
                await pace.turn()
                try:
                    await self._pay(row["currency"], row["booked_at"], allocation, by)
                except Unavailable:
                    raise
                except ServiceError as err:  # refused, not found: the line waits, saying why
                    return str(err)
                summary.payments += 1
                summary.paid += Decimal(allocation["amount"])
                return None

        outcomes = await asyncio.gather(
            *(pay(row, a) for row in rows for a in row["allocations"]),
        )
        answers = iter(outcomes)
        changes: list[dict[str, Any]] = []
        for row in rows:
            refusals = {
                a["invoice_id"]: refusal
                for a in row["allocations"]
                if (refusal := next(answers)) is not None
            }
            change: dict[str, Any] = {"ref": row["reference"], "recorded": True}
            if refusals:
                if row["status"] != "refused":  # counted as matched (or overpaid) when stored
                    self._count(summary, row["status"], -1)
                    self._count(summary, "refused")
                kept = [a for a in row["allocations"] if a["invoice_id"] not in refusals]
                refused = sum(
                    (
                        Decimal(a["amount"])
                        for a in row["allocations"]
                        if a["invoice_id"] in refusals
                    ),
                    ZERO,
                )
                change |= {
                    "status": "refused",
                    "why": Why.REFUSED.value,
                    "rest": Decimal(row["rest"]) + refused,
                    "refusal": "; ".join(f"{k}: {v}" for k, v in refusals.items())[:2000],
                    "allocations": kept,
                }
            changes.append(change)
        if changes:
            await asyncio.to_thread(self._recorded, changes)

    def _recorded(self, changes: list[dict[str, Any]]) -> None:
        with reading(self._settings.database_url) as session, session.begin():
            for change in changes:
                values = {k: v for k, v in change.items() if k != "ref"}
                session.execute(
                    update(StatementLineRow)
                    .where(StatementLineRow.reference == change["ref"])
                    .values(**values)
                )

    # -- the finance queue

    def queue(self, page: int = 1, per_page: int = 50) -> tuple[list[QueueLine], int]:
        """The lines waiting for finance, oldest first, and how many there are."""
        with reading(self._settings.database_url) as session:
            where = StatementLineRow.status.in_(WAITING)
            total = session.scalar(select(func.count()).select_from(StatementLineRow).where(where))
            rows = session.scalars(
                select(StatementLineRow)
                .where(where)
                .order_by(StatementLineRow.booked_at, StatementLineRow.id)
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
            return [_queue_line(row) for row in rows], int(total or 0)

    def matched_today(self, now: datetime | None = None, limit: int = 200) -> list[QueueLine]:
        """Finance's "today's matches": the lines recorded as payments since midnight in the
        business timezone, automatically at import or by a person from the queue, newest first."""
        today = (now or datetime.now(UTC)).astimezone(self._zone).date()
        since = datetime.combine(today, time(0, 0), tzinfo=self._zone).astimezone(UTC)
        with reading(self._settings.database_url) as session:
            rows = session.scalars(
                select(StatementLineRow)
                .where(StatementLineRow.status == "matched", StatementLineRow.updated_at >= since)
                .order_by(StatementLineRow.updated_at.desc(), StatementLineRow.id.desc())
                .limit(limit)
            ).all()
            return [_queue_line(row) for row in rows]

    async def match_line(self, line_id: int, invoice_ids: list[str], *, by: str) -> QueueLine:
        """Finance matches a waiting line to bills (in the order given): what each takes is paid,
        the rest stays (overpaid); the payer's account is taught to the bills' customer."""
        if not invoice_ids:
            raise Refused("invoice_id: name at least one invoice")
        line = await asyncio.to_thread(self._line, line_id)
        if line.status not in WAITING or line.rest <= 0:
            raise Refused(f"line {line_id} is {line.status}: nothing waits to be matched")
        views = [await self._collections.show(invoice_id) for invoice_id in invoice_ids]
        tenants = {view.customer.tenant_id for view in views}
        if len(tenants) > 1:
            raise Refused("invoice_id: the invoices are of different customers")
        for view in views:
            if view.currency != line.currency:
                raise Refused(
                    f"invoice_id: invoice {view.invoice_id} is in {view.currency}, "
                    f"the line in {line.currency}"
                )
            if view.status.is_final or view.balance <= 0:
                raise Refused(f"invoice_id: invoice {view.invoice_id} has nothing to pay")
        bills = [
            OpenBill(
                v.invoice_id,
                v.customer.tenant_id,
                v.customer.name,
                v.currency,
                v.balance,
                v.first_failed_at,
            )
            for v in views
        ]
        taken, left = allocate(bills, line.rest)
        several = len(line.allocations) + len(taken) > 1
        done = list(line.allocations)
        for allocation in taken:
            pid = payment_id(line.reference, allocation.invoice_id, several)
            paid = {"invoice_id": allocation.invoice_id, "amount": str(allocation.amount)}
            await self._pay(line.currency, line.booked_at, paid | {"payment_id": pid}, by)
            done.append(paid | {"payment_id": pid})
        (tenant,) = tenants
        status = Verdict.OVERPAID.value if left > 0 else Verdict.MATCHED.value
        await asyncio.to_thread(self._matched, line, done, left, status, tenant, by)
        return await asyncio.to_thread(self._line, line_id)

    async def _pay(
        self, currency: str, received_at: datetime, allocation: dict[str, str], by: str
    ) -> None:
        """One allocation of a line as the invoice's payment: the path of `/v1/payments`."""
        payment = PaymentReceived(
            payment_id=allocation["payment_id"],
            invoice_id=allocation["invoice_id"],
            amount=Decimal(allocation["amount"]),
            currency=currency,
            received_at=received_at,
            by=by,
        )
        await self._collections.act(payment.invoice_id, payment)

    def _line(self, line_id: int) -> QueueLine:
        with reading(self._settings.database_url) as session:
            row = session.get(StatementLineRow, line_id)
            if row is None:
                raise NotFound(f"no statement line {line_id}")
            return _queue_line(row)

    def _matched(
        self,
        line: QueueLine,
        allocations: list[dict[str, str]],
        rest: Decimal,
        status: str,
        tenant: str,
        by: str,
    ) -> None:
        now = datetime.now(UTC)
        with reading(self._settings.database_url) as session, session.begin():
            session.execute(
                update(StatementLineRow)
                .where(StatementLineRow.id == line.id)
                .values(
                    status=status,
                    why=Why.CHOSEN.value,
                    rest=rest,
                    allocations=allocations,
                    recorded=True,
                    tenant_id=tenant,
                    matched_by=by,
                    matched_at=now,
                )
            )
            if line.payer_account:
                taught = session.get(PayerAccount, line.payer_account)
                if taught is None:
                    session.add(
                        PayerAccount(
                            account=line.payer_account,
                            tenant_id=tenant,
                            payer_name=line.payer_name,
                            learnt_by=by,
                        )
                    )
                else:
                    taught.tenant_id, taught.learnt_by = tenant, by

    def set_aside(self, line_id: int, *, by: str) -> QueueLine:
        """Finance takes a waiting line out of the queue, paying nothing: not a customer's payment
        (interest, a refund from a supplier, a transfer between the partner's own accounts)."""
        now = datetime.now(UTC)
        with reading(self._settings.database_url) as session, session.begin():
            row = session.get(StatementLineRow, line_id)
            if row is None:
                raise NotFound(f"no statement line {line_id}")
            if row.status not in WAITING:
                raise Refused(f"line {line_id} is {row.status}: nothing waits to be matched")
            row.status, row.why, row.matched_by, row.matched_at = (
                "set-aside",
                Why.SET_ASIDE,
                by,
                now,
            )
            return _queue_line(row)

    def payer_accounts(self, tenant_id: str) -> list[str]:
        with reading(self._settings.database_url) as session:
            return list(
                session.scalars(
                    select(PayerAccount.account).where(PayerAccount.tenant_id == tenant_id)
                )
            )


def _queue_line(row: StatementLineRow) -> QueueLine:
    return QueueLine(
        id=row.id,
        reference=row.reference,
        file_name=row.file_name,
        row=row.row,
        booked_at=row.booked_at,
        amount=row.amount,
        rest=row.rest,
        currency=row.currency,
        payer_name=row.payer_name,
        payer_account=row.payer_account,
        remark=row.remark,
        status=row.status,
        why=row.why,
        refusal=row.refusal,
        candidates=list(row.candidates or []),
        allocations=list(row.allocations or []),
    )
