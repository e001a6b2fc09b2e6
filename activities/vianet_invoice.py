"""Keeps the ``vianet_invoices`` row in step with its VianetInvoiceWorkflow."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.errors import database
from core.models import PersistVianetInvoice
from db.session import lock_for_write, twice_on_conflict
from db.tables import VianetInvoice


class VianetInvoiceActivities:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    @activity.defn
    def persist_vianet_invoice(self, data: PersistVianetInvoice) -> None:
        """Upsert the invoice's row; safe to repeat, and an older state never replaces a newer."""
        with database(f"21Vianet invoice {data.view.invoice_number}"):
            twice_on_conflict(lambda: self._write(data))

    def _write(self, data: PersistVianetInvoice) -> None:
        view = data.view
        with self._session_factory.begin() as session:
            lock_for_write(session)
            row = session.get(VianetInvoice, view.invoice_number, with_for_update=True)
            if row is None:
                row = VianetInvoice(invoice_number=view.invoice_number, last_event_seq=-1)
                session.add(row)
            if data.seq < row.last_event_seq:
                return  # a late retry of an earlier state
            row.workflow_id = view.workflow_id
            row.status = view.status.value
            row.amount = view.amount
            row.currency = view.currency
            row.due_date = view.due_date
            row.recorded_at = view.recorded_at
            row.recorded_by = view.recorded_by
            row.reminders_sent = view.reminders_sent
            row.escalated_at = view.escalated_at
            row.paid_at = view.paid_at
            row.paid_reference = view.paid_reference
            row.paid_by = view.paid_by
            row.last_event_seq = data.seq
