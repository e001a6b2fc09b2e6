"""The customers' credit balances as the service offers them (docs/finance.md): a payment for an
invoice whose collections ended becomes credit; finance applies credit to another open invoice or
refunds it; a manager approves or refuses a refund above REFUND_APPROVAL_ABOVE. The account
workflow keeps the ledger (workflows/account/ledger.py); the accounts rows are its readable copy,
which the finance pages list."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from temporalio.client import Client

from core.formatting import money
from core.ids import account_workflow_id, collections_workflow_id
from core.models import (
    AccountView,
    CollectionsStatus,
    CollectionsView,
    Customer,
    EventKind,
    Locale,
    Overpayment,
    PaymentReceived,
    StartAccount,
)
from core.models.ledger import (
    ApplyCredit,
    DecideRefund,
    LedgerView,
    RequestRefund,
    UnappliedPayment,
)
from core.priority import BULK
from core.settings import Settings
from db.tables import Account, CollectionsEventRow
from db.tables import Collections as CollectionsRow
from service.accounts import named
from service.calls import attempt, reading, start
from service.collections import named as invoice_named
from service.errors import NotFound, Refused
from workflows.account import AccountWorkflow
from workflows.account.ledger import another_amount
from workflows.collections import CollectionsWorkflow


@dataclass(frozen=True)
class CreditRow:
    """One customer's ledger as the accounts row has it."""

    tenant_id: str
    customer_name: str
    ledger: LedgerView


class Ledger:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    def _handle(self, tenant_id: str) -> Any:
        return self._client.get_workflow_handle_for(
            AccountWorkflow.run, account_workflow_id(tenant_id)
        )

    async def _update(self, tenant_id: str, update: Any, data: Any, **kw: Any) -> AccountView:
        call = self._handle(tenant_id).execute_update(update, data, **kw)
        view: AccountView = await attempt(self._client, named(tenant_id), call)
        return view

    # -- money in
    async def take_payment(self, payment: PaymentReceived) -> CollectionsView:
        """A payment for an invoice whose collections ended (a duplicate transfer, a payment after
        a credit): all of it is the customer's credit on their account, started if need be. The
        invoice's own payment ids are checked first: the same id with another amount is refused
        naming both. Answers the invoice as stored, the payment shown as its credit."""
        row, recorded = await asyncio.to_thread(self._invoice, payment.invoice_id)
        if row is None:
            raise NotFound(f"invoice {payment.invoice_id} is not in collections")
        if payment.currency != row.currency:
            raise Refused(f"currency: payment in {payment.currency}, invoice in {row.currency}")
        if payment.payment_id in recorded:
            if recorded[payment.payment_id] != payment.amount:
                raise Refused(
                    another_amount(
                        payment.payment_id,
                        recorded[payment.payment_id],
                        payment.amount,
                        row.currency,
                    )
                )
            return _stored_view(row, None)  # counted by the invoice already
        customer = Customer(
            tenant_id=row.tenant_id,
            name=row.customer_name,
            email=row.customer_email,
            locale=Locale(row.locale),
        )
        await self._started(customer)
        direct = UnappliedPayment(
            payment_id=payment.payment_id,
            invoice_id=payment.invoice_id,
            currency=payment.currency,
            amount=payment.amount,
            by=payment.by,
        )
        await self._update(
            row.tenant_id,
            AccountWorkflow.take_payment,
            direct,
            id=f"payment-{payment.payment_id}-{payment.amount}",
        )
        return _stored_view(row, payment)

    def _invoice(self, invoice_id: str) -> tuple[Any, dict[str, Decimal]]:
        with reading(self._settings.database_url) as session:
            row = session.get(CollectionsRow, invoice_id)
            events = session.scalars(
                select(CollectionsEventRow.data).where(
                    CollectionsEventRow.invoice_id == invoice_id,
                    CollectionsEventRow.kind == EventKind.PAYMENT_RECEIVED.value,
                )
            ).all()
            if row is not None:
                session.expunge(row)
        recorded = {
            data["payment_id"]: Decimal(data["amount"])
            for data in events
            if "payment_id" in data and "amount" in data
        }
        return row, recorded

    async def _started(self, customer: Customer) -> None:
        """The customer's account, started unless an invoice of theirs did."""
        policy = self._settings.collections_policy()
        await start(
            self._client,
            AccountWorkflow.run,
            StartAccount(
                customer=customer,
                policy=policy,
                told_when_delivered=self._settings.case_policy().told_when_delivered,
            ),
            named(customer.tenant_id),
            self._settings.task_queue,
            priority=BULK,  # as when an invoice starts it
            static_summary=f"Account of tenant {customer.tenant_id}",
        )

    # -- money out
    async def apply(self, tenant_id: str, data: ApplyCredit) -> AccountView:
        """Finance applies credit to an open invoice of the same customer and currency, at most
        its balance: refused here, naming the field, before the account is asked."""
        handle = self._client.get_workflow_handle_for(
            CollectionsWorkflow.run, collections_workflow_id(data.invoice_id)
        )
        try:
            invoice = await attempt(
                self._client, invoice_named(data.invoice_id), handle.query(CollectionsWorkflow.view)
            )
        except NotFound:
            raise Refused(f"invoice_id: invoice {data.invoice_id} is not in collections") from None
        if invoice.customer.tenant_id != tenant_id:
            raise Refused(f"invoice_id: invoice {data.invoice_id} is another customer's")
        if invoice.status.is_final:
            raise Refused(f"invoice_id: invoice {data.invoice_id} is {invoice.status.value}")
        if invoice.currency != data.currency:
            raise Refused(
                f"currency: invoice {data.invoice_id} is in {invoice.currency}, not {data.currency}"
            )
        if data.amount > invoice.balance:
            raise Refused(
                f"amount: {money(data.amount, data.currency)} exceeds invoice "
                f"{data.invoice_id}'s balance of {money(invoice.balance, data.currency)}"
            )
        return await self._update(tenant_id, AccountWorkflow.apply_credit, data)

    async def request_refund(self, tenant_id: str, data: RequestRefund) -> AccountView:
        """Refunded at once, or above REFUND_APPROVAL_ABOVE waiting for a manager."""
        above = self._settings.refund_approval(data.currency)
        asked = RequestRefund.model_validate({**data.model_dump(), "approval_above": above})
        return await self._update(tenant_id, AccountWorkflow.request_refund, asked)

    async def approve_refund(self, tenant_id: str, data: DecideRefund) -> AccountView:
        return await self._update(tenant_id, AccountWorkflow.approve_refund, data)

    async def refuse_refund(self, tenant_id: str, data: DecideRefund) -> AccountView:
        return await self._update(tenant_id, AccountWorkflow.refuse_refund, data)

    # -- the finance pages (the database's copy)
    async def balances(self) -> list[CreditRow]:
        """Every customer with credit (or a refund held back), by name."""
        return await asyncio.to_thread(self._rows, Account.has_credit.is_(True))

    async def awaiting(self) -> list[CreditRow]:
        """Every customer with a refund awaiting a manager's approval."""
        return await asyncio.to_thread(self._rows, Account.refunds_awaiting > 0)

    def _rows(self, condition: Any) -> list[CreditRow]:
        with reading(self._settings.database_url) as session:
            rows = session.execute(
                select(Account.account_id, Account.customer_name, Account.ledger)
                .where(condition)
                .order_by(Account.customer_name, Account.account_id)
                .limit(500)
            ).all()
        return [
            CreditRow(tenant_id=r[0], customer_name=r[1], ledger=LedgerView.model_validate(r[2]))
            for r in rows
        ]


def _stored_view(row: Any, payment: PaymentReceived | None) -> CollectionsView:
    """The ended invoice as its row has it; `payment`: the one that became the customer's credit."""
    credit = payment.amount if payment else Decimal("0.00")
    return CollectionsView(
        invoice_id=row.invoice_id,
        workflow_id=row.workflow_id,
        status=CollectionsStatus(row.status),
        stage=row.stage,
        customer=Customer(
            tenant_id=row.tenant_id,
            name=row.customer_name,
            email=row.customer_email,
            locale=Locale(row.locale),
        ),
        subscription_ids=list(row.subscription_ids),
        currency=row.currency,
        amount_due=row.amount_due,
        paid=row.paid,
        credited=row.credited,
        balance=row.balance,
        first_failed_at=row.first_failed_at,
        credit=credit,
        overpayment=Overpayment(
            payment_id=payment.payment_id,
            received=payment.amount,
            applied=Decimal("0.00"),
            credit=payment.amount,
        )
        if payment
        else None,
        failures=[],
    )
