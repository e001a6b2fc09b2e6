"""The partner's payable to 21Vianet as the service offers it: record an invoice, mark it paid,
show it."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from temporalio.client import Client

from core import ui
from core.ids import vianet_invoice_workflow_id
from core.models import MarkVianetPaid, RecordVianetInvoice, VianetInvoiceView
from core.settings import Settings
from db.tables import VianetInvoice
from service.calls import Named, attempt, reading, start
from service.errors import AlreadyExists
from workflows.vianet_invoice import VianetInvoiceWorkflow


def named(invoice_number: str) -> Named:
    return Named(
        vianet_invoice_workflow_id(invoice_number),
        f"21Vianet invoice {invoice_number}",
        f"no 21Vianet invoice {invoice_number} is recorded",
        completed=f"21Vianet invoice {invoice_number} is already marked paid",
    )


class VianetInvoices:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def record(self, data: RecordVianetInvoice) -> VianetInvoiceView:
        """Start the invoice's VianetInvoiceWorkflow; an invoice number is recorded once, ever
        (the database remembers it after Temporal has forgotten the workflow)."""
        if await asyncio.to_thread(self._recorded, data.invoice_number):
            raise AlreadyExists(f"21Vianet invoice {data.invoice_number} is already recorded")
        started = await start(
            self._client,
            VianetInvoiceWorkflow.run,
            data,
            named(data.invoice_number),
            self._settings.task_queue,
            static_summary=ui.vianet_invoice_summary(data),
        )
        if not started:
            raise AlreadyExists(f"21Vianet invoice {data.invoice_number} is already recorded")
        return await self.show(data.invoice_number)

    def _recorded(self, invoice_number: str) -> bool:
        with reading(self._settings.database_url) as session:
            row = session.scalar(
                select(VianetInvoice.invoice_number).where(
                    VianetInvoice.invoice_number == invoice_number
                )
            )
        return row is not None

    async def mark_paid(self, invoice_number: str, data: MarkVianetPaid) -> VianetInvoiceView:
        """The partner paid it: the reminders stop and it closes."""
        handle = self._client.get_workflow_handle_for(
            VianetInvoiceWorkflow.run, vianet_invoice_workflow_id(invoice_number)
        )
        view: VianetInvoiceView = await attempt(
            self._client,
            named(invoice_number),
            handle.execute_update(VianetInvoiceWorkflow.mark_paid, data),
        )
        return view

    async def show(self, invoice_number: str) -> VianetInvoiceView:
        handle = self._client.get_workflow_handle_for(
            VianetInvoiceWorkflow.run, vianet_invoice_workflow_id(invoice_number)
        )
        return await attempt(
            self._client, named(invoice_number), handle.query(VianetInvoiceWorkflow.view)
        )
