"""VianetInvoiceWorkflow: one invoice 21Vianet sent the partner, which the partner pays whether or
not its own customers pay. The shell of its rules (rules.py): the notices at their dates, the
payment, the database row."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import TypedSearchAttributes, VersioningBehavior
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.contracts import PERSIST_VIANET_INVOICE
    from core.formatting import money
    from core.models import (
        CaseEvent,
        EmailSent,
        Locale,
        MarkVianetPaid,
        PersistVianetInvoice,
        Recipient,
        RecordVianetInvoice,
        VianetInvoiceView,
    )
    from workflows.base import ActionRefused, Alarm, EffectLoop, SendEmail, without_timeline
    from workflows.effects import Email, Flag, Record
    from workflows.vianet_invoice.rules import Effect, VianetInvoice


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class VianetInvoiceWorkflow(EffectLoop[SendEmail]):
    @workflow.init
    def __init__(self, data: RecordVianetInvoice) -> None:
        self._data = data
        self._start_log(data.carried.log if data.carried else None)
        if data.carried is not None:
            self._invoice = VianetInvoice.carried(data.carried)
        else:
            self._invoice, recorded = VianetInvoice.record(data, workflow.now())
            self._apply(recorded)

    def _continue_as_new(self) -> None:
        self._carry_on(self._data, self._invoice)

    @workflow.run
    async def run(self, data: RecordVianetInvoice) -> VianetInvoiceView:
        await self._serve()
        return self.view()

    def _finished(self) -> bool:
        return self._invoice.finished

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Record():
                    self._record(effect.kind, effect.actor, effect.text, **effect.data)
                case Email():
                    self._effects.append(SendEmail(effect.data, effect.to))
                case Flag():
                    self._flag(effect.why, effect.reason, tell=False)

    @workflow.update
    def mark_paid(self, data: MarkVianetPaid) -> VianetInvoiceView:
        self._apply(self._invoice.mark_paid(data, workflow.now()))
        return without_timeline(self.view())

    @mark_paid.validator
    def _check_paid(self, data: MarkVianetPaid) -> None:
        why = self._invoice.refusal(data, workflow.now())
        if why is not None:
            raise ActionRefused(why)

    @workflow.query
    def view(self) -> VianetInvoiceView:
        invoice = self._invoice
        data, payment, stage = invoice.invoice, invoice.payment, invoice.next_stage()
        return VianetInvoiceView(
            invoice_number=data.invoice_number,
            workflow_id=workflow.info().workflow_id,
            status=invoice.status,
            amount=data.amount,
            currency=data.currency,
            due_date=data.due_date,
            recorded_at=invoice.recorded_at,
            recorded_by=data.recorded_by,
            finance_email=str(data.finance_email),
            manager_email=str(data.manager_email),
            remind_days_before=data.remind_days_before,
            reminders_sent=invoice.reminders,
            next_reminder=stage.name if stage else None,
            next_reminder_at=stage.at if stage else None,
            escalated_at=invoice.escalated_at,
            paid_at=payment.paid_at if payment else None,
            paid_reference=payment.reference if payment else None,
            paid_by=payment.by if payment else None,
            needs_attention=self._attention_line(),
            attention=self._attention_reason(),
            event_count=self._seq,
            timeline=self._timeline(),
        )

    def _next_alarm(self) -> Alarm | None:
        stage = self._invoice.next_stage()
        if stage is None:
            return None
        fire = lambda: self._apply(self._invoice.fire(workflow.now()))  # noqa: E731
        return Alarm(stage.at, f"21Vianet invoice: {stage.name}", fire)

    def _attributes(self) -> TypedSearchAttributes:
        return TypedSearchAttributes([])  # it is found by its id: no attribute of its own

    def _publish_details(self) -> None:
        """Markdown for the UI's current details: amount, due date, reminders, what comes next."""
        invoice, data = self._invoice, self._invoice.invoice
        stage = invoice.next_stage()
        nxt = f"\n\nNext: {stage.name} on {stage.at:%Y-%m-%d %H:%M} CST" if stage else ""
        attention = self._attention_line()
        workflow.set_current_details(
            (f"**{attention}**\n\n" if attention else "")
            + f"**{invoice.status.value}** · {money(data.amount, data.currency)} due "
            f"{data.due_date.isoformat()} · reminders {invoice.reminders}{nxt}"
        )

    def _address(self, recipient: Recipient) -> str:
        return self._invoice.address(recipient)

    def _send_locale(self) -> Locale:
        return self._data.locale

    async def _send(self, email: SendEmail) -> EmailSent | ApplicationError:
        return await self._send_email(email, self._send_locale(), vianet_invoice=self.view())

    async def _carry_out(self, effect: SendEmail) -> None:
        await self._send(effect)

    async def _persist(self, events: list[CaseEvent]) -> None:
        await self._write(
            PERSIST_VIANET_INVOICE,
            PersistVianetInvoice(view=without_timeline(self.view()), seq=events[-1].seq),
            f"Save 21Vianet invoice: {self._invoice.status.value}",
        )
