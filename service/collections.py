"""Invoices in collections as the service offers them: a billing failure starts or joins, a payment
is recorded, agents and managers act, anyone may look."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from temporalio.client import Client

from core import search, ui
from core.ids import collections_workflow_id
from core.models import (
    WORKING_STATUSES,
    BillingFailure,
    CasePolicy,
    CollectionsPolicy,
    CollectionsStatus,
    CollectionsView,
    CorrectContact,
    DecideSuspension,
    OpenDispute,
    PaymentReceived,
    PromiseToPay,
    ReportFraud,
    ResumePolicy,
    StartCollections,
    TriageReply,
    Waive,
)
from core.priority import BULK
from core.settings import Settings
from db.tables import Account
from db.tables import Collections as CollectionsRow
from service.accounts import Accounts
from service.calls import Named, attempt, ended_status, reading, start
from service.cases import Cases
from service.errors import Ended, NotFound, Refused
from workflows.collections import CollectionsWorkflow


class Approve(DecideSuspension):
    """A manager approves the suspension the policy asks for."""


class RefuseSuspension(DecideSuspension):
    """A manager refuses it: no suspension, the manager takes the invoice over."""


class Started(StrEnum):
    STARTED = "started"  # a new collections workflow
    JOINED = "joined"  # the invoice's running workflow took the failure


InvoiceAction = (
    PaymentReceived
    | OpenDispute
    | ReportFraud
    | PromiseToPay
    | Waive
    | ResumePolicy
    | TriageReply
    | CorrectContact
    | Approve
    | RefuseSuspension
)
UPDATES: dict[type[InvoiceAction], Any] = {
    PaymentReceived: CollectionsWorkflow.payment_received,
    OpenDispute: CollectionsWorkflow.open_dispute,
    ReportFraud: CollectionsWorkflow.report_fraud,
    PromiseToPay: CollectionsWorkflow.promise_to_pay,
    Waive: CollectionsWorkflow.waive,
    ResumePolicy: CollectionsWorkflow.resume,
    TriageReply: CollectionsWorkflow.triage_reply,
    CorrectContact: CollectionsWorkflow.correct_contact,
    Approve: CollectionsWorkflow.approve_suspension,
    RefuseSuspension: CollectionsWorkflow.refuse_suspension,
}
Policies = tuple[CollectionsPolicy, CasePolicy]


# before a failure is reported: how its invoice's collections ended (None: they did not, or never
# ran) and its customer's overrides as stored (None: no account yet)
Known = tuple[str | None, dict[str, Any] | None]


def _ended(status: str | None) -> str | None:
    return status if status and CollectionsStatus(status).is_final else None


def named(invoice_id: str) -> Named:
    return Named(
        collections_workflow_id(invoice_id),
        f"collections of invoice {invoice_id}",
        f"invoice {invoice_id} is not in collections",
    )


class Collections:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._accounts = Accounts(client, settings)

    def policies(self) -> Policies:
        """The collections and the case policy a new collections workflow starts with."""
        return self._settings.collections_policy(), self._settings.case_policy()

    async def start(
        self,
        failure: BillingFailure,
        policies: Policies | None = None,
        overridden: str | None = None,
    ) -> bool:
        """Start the invoice's CollectionsWorkflow with its first failure; False when its id was
        used already (the invoice's collections runs, or ran). `overridden`: how the customer's
        overrides shaped `policies` (report_failure looks them up)."""
        policy, case_policy = policies or self.policies()
        return await start(
            self._client,
            CollectionsWorkflow.run,
            StartCollections(
                failure=failure, policy=policy, case_policy=case_policy, overridden=overridden
            ),
            named(failure.invoice_id),
            self._settings.task_queue,
            priority=BULK,
            static_summary=ui.collections_summary(failure),
            static_details=ui.collections_details(failure),
            search_attributes=search.collections_attributes(
                invoice_id=failure.invoice_id,
                tenant_id=failure.customer.tenant_id,
                stage="opened",
                balance=failure.amount_due,
                suspended=False,
            ),
        )

    async def report_failure(
        self,
        failure: BillingFailure,
        policies: Policies | None = None,
        known: Known | None = None,
    ) -> Started:
        """The first failure of an invoice starts its CollectionsWorkflow; a later one joins it
        (the same failure id again changes nothing; another tenant or currency is refused). An
        invoice whose collections ended is Ended: re-running an import starts nothing.
        `policies`: read once by a caller reporting many failures; by default from the files.
        `known`: what `known_many` read for it with its neighbours; by default read here."""
        if known is None:
            known = await asyncio.to_thread(self._known, failure)
        ended, overrides = known
        if ended is not None:  # for ever: Temporal forgets a closed workflow after retention
            raise Ended(f"invoice {failure.invoice_id}: its collections already ended ({ended})")
        policy, case_policy = policies or self.policies()
        policy, overridden = self._accounts.for_customer(policy, overrides)
        if await self.start(failure, (policy, case_policy), overridden):
            return Started.STARTED
        invoice = named(failure.invoice_id)  # it runs (join it) or it ended (say so)
        handle = self._client.get_workflow_handle_for(CollectionsWorkflow.run, invoice.workflow_id)
        try:
            await attempt(
                self._client,
                invoice,
                handle.execute_update(CollectionsWorkflow.add_failure, failure),
            )
        except (Ended, NotFound):
            status = await ended_status(self._client, invoice.workflow_id)
            raise Ended(
                f"invoice {failure.invoice_id}: its collections already ended ({status})"
            ) from None
        return Started.JOINED

    def _known(self, failure: BillingFailure) -> Known:
        """What the database knows before a failure is reported: how the invoice's collections
        ended (None if they did not, or never ran) and the customer's overrides (None without an
        account)."""
        return self.known_many([failure])[failure.invoice_id]

    def known_many(self, failures: list[BillingFailure]) -> dict[str, Known]:
        """`_known` for many failures at once (an import reads a batch so), by invoice id: two
        queries in one session."""
        invoices = {f.invoice_id for f in failures}
        tenants = {f.customer.tenant_id for f in failures}
        if not invoices:
            return {}
        with reading(self._settings.database_url) as session:
            statuses = dict(
                session.execute(
                    select(CollectionsRow.invoice_id, CollectionsRow.status).where(
                        CollectionsRow.invoice_id.in_(invoices)
                    )
                ).all()
            )
            overrides: dict[str, dict[str, Any] | None] = dict(
                session.execute(
                    select(Account.account_id, Account.overrides).where(
                        Account.account_id.in_(tenants)
                    )
                ).all()
            )
        return {
            f.invoice_id: (_ended(statuses.get(f.invoice_id)), overrides.get(f.customer.tenant_id))
            for f in failures
        }

    async def act(
        self, invoice_id: str, action: InvoiceAction, *, update_id: str | None = None
    ) -> CollectionsView:
        """A payment, or an agent's or manager's action; the view after it (no timeline). The
        same `update_id` again is answered with the first outcome, not run again."""
        if isinstance(action, OpenDispute) and action.case_id:
            await self._check_link(invoice_id, action.case_id)
        if isinstance(action, PaymentReceived) and update_id is None:
            # a payment (its id and amount) is its update's id: told again (a retry after a
            # crash, a re-sent notice), Temporal answers the first outcome, even once the invoice
            # is paid and its collections ended; the same id with another amount is the
            # validator's to refuse
            update_id = f"payment-{action.payment_id}-{action.amount}"
        handle = self._client.get_workflow_handle_for(
            CollectionsWorkflow.run, collections_workflow_id(invoice_id)
        )
        update = handle.execute_update(UPDATES[type(action)], action, id=update_id)
        try:
            view: CollectionsView = await attempt(self._client, named(invoice_id), update)
        except (Ended, NotFound, Refused):
            if not isinstance(action, PaymentReceived) or not await self._ended(invoice_id):
                raise
            # a duplicate transfer, a payment after a credit: the customer's credit balance
            from service.ledger import Ledger  # it reads invoices through this module

            return await Ledger(self._client, self._settings).take_payment(action)
        return view

    async def _ended(self, invoice_id: str) -> bool:
        """Whether the invoice's collections ended, as the database remembers it."""

        def status() -> str | None:
            with reading(self._settings.database_url) as session:
                row = session.get(CollectionsRow, invoice_id)
                return None if row is None else row.status

        return _ended(await asyncio.to_thread(status)) is not None

    async def _check_link(self, invoice_id: str, case_id: str) -> None:
        """A case linked to a dispute must exist, be the same customer's, in the same currency,
        and still be worked: refused here, before anything is signalled."""
        invoice = await self.show(invoice_id)
        try:
            case = await Cases(self._client, self._settings).show(case_id)
        except NotFound:
            raise Refused(f"case_id: no case {case_id}") from None
        details = case.details
        if details.customer.tenant_id != invoice.customer.tenant_id:
            raise Refused(
                f"case_id: case {case_id} is tenant {details.customer.tenant_id}'s, invoice "
                f"{invoice_id} tenant {invoice.customer.tenant_id}'s"
            )
        if details.currency != invoice.currency:
            raise Refused(
                f"case_id: case {case_id} is in {details.currency}, invoice {invoice_id} in "
                f"{invoice.currency}"
            )
        if case.status not in WORKING_STATUSES:
            raise Refused(
                f"case_id: case {case_id} is {case.status.value}: link a case that is still "
                "being worked, or open a new one (leave out --case)"
            )

    async def show(self, invoice_id: str) -> CollectionsView:
        handle = self._client.get_workflow_handle_for(
            CollectionsWorkflow.run, collections_workflow_id(invoice_id)
        )
        return await attempt(
            self._client, named(invoice_id), handle.query(CollectionsWorkflow.view)
        )
