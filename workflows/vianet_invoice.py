"""VianetInvoiceWorkflow: one invoice 21Vianet sent the partner, which the partner pays whether or
not its own customers pay. Finance is reminded some days before the due date and on the day; a
manager hears of it the day after if it is still not marked paid; marking it paid ends it.

Notices go out at 09:00 China Standard Time, when the finance team's day starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from temporalio import workflow
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.contracts import PERSIST_VIANET_INVOICE
    from core.formatting import CHINA_STANDARD_TIME, china_day, money
    from core.models import (
        CaseEvent,
        EmailSent,
        EventKind,
        Locale,
        MarkVianetPaid,
        PersistVianetInvoice,
        Recipient,
        RecordVianetInvoice,
        VianetInvoiceState,
        VianetInvoiceStatus,
        VianetInvoiceView,
    )
    from core.models.email import FinanceVianetInvoiceDue, ManagerVianetInvoiceOverdue
    from workflows.base import (
        WORKFLOW,
        ActionRefused,
        Alarm,
        EffectLoop,
        SendEmail,
        without_timeline,
    )

NOTICE_TIME = time(9, 0)
# the person's clock may run a little ahead of the worker's: a payment "now" is not in the future
CLOCK_SKEW = timedelta(minutes=5)


def notice_at(day: date) -> datetime:
    return datetime.combine(day, NOTICE_TIME, tzinfo=CHINA_STANDARD_TIME)


@dataclass(frozen=True)
class Stage:
    name: str
    at: datetime


@workflow.defn
class VianetInvoiceWorkflow(EffectLoop[SendEmail]):
    @workflow.init
    def __init__(self, data: RecordVianetInvoice) -> None:
        carried = data.carried
        self._start_log(carried.log if carried else None)
        self._data = data
        self._status = carried.status if carried else VianetInvoiceStatus.UNPAID
        self._recorded_at = carried.recorded_at if carried else workflow.now()
        self._done: set[str] = set(carried.stages_done) if carried else set()
        self._reminders = carried.reminders if carried else 0
        self._escalated_at: datetime | None = carried.escalated_at if carried else None
        self._payment: MarkVianetPaid | None = None  # paid ends the workflow: never carried

    def _continue_as_new(self) -> None:
        state = VianetInvoiceState(
            status=self._status,
            recorded_at=self._recorded_at,
            stages_done=sorted(self._done),
            reminders=self._reminders,
            escalated_at=self._escalated_at,
            log=self._log_state(),
        )
        workflow.continue_as_new(self._data.model_copy(update={"carried": state}))

    @workflow.run
    async def run(self, data: RecordVianetInvoice) -> VianetInvoiceView:
        if data.carried is None:
            self._record(
                EventKind.VIANET_INVOICE_RECORDED,
                data.recorded_by,
                f"{data.currency} {data.amount:,.2f} due {data.due_date.isoformat()}",
                amount=str(data.amount),
                due_date=data.due_date.isoformat(),
            )
        await self._serve()
        return self.view()

    def _finished(self) -> bool:
        return self._status is VianetInvoiceStatus.PAID

    @workflow.update
    def mark_paid(self, data: MarkVianetPaid) -> VianetInvoiceView:
        self._payment = data
        self._status = VianetInvoiceStatus.PAID
        self._record(
            EventKind.VIANET_INVOICE_PAID, data.by, data.reference, paid_at=data.paid_at.isoformat()
        )
        return without_timeline(self.view())

    @mark_paid.validator
    def _check_paid(self, data: MarkVianetPaid) -> None:
        if self._payment is not None:
            raise ActionRefused(
                f"21Vianet invoice {self._data.invoice_number} is already marked paid "
                f"(reference {self._payment.reference})"
            )
        if data.paid_at > workflow.now() + CLOCK_SKEW:
            raise ActionRefused(f"paid_at: {data.paid_at.isoformat()} is in the future")

    @workflow.query
    def view(self) -> VianetInvoiceView:
        data, payment = self._data, self._payment
        stage = None if self._finished() else self._next_stage()
        return VianetInvoiceView(
            invoice_number=data.invoice_number,
            workflow_id=workflow.info().workflow_id,
            status=self._status,
            amount=data.amount,
            currency=data.currency,
            due_date=data.due_date,
            recorded_at=self._recorded_at,
            recorded_by=data.recorded_by,
            finance_email=str(data.finance_email),
            manager_email=str(data.manager_email),
            remind_days_before=data.remind_days_before,
            reminders_sent=self._reminders,
            next_reminder=stage.name if stage else None,
            next_reminder_at=stage.at if stage else None,
            escalated_at=self._escalated_at,
            paid_at=payment.paid_at if payment else None,
            paid_reference=payment.reference if payment else None,
            paid_by=payment.by if payment else None,
            needs_attention=self._attention_line(),
            event_count=self._seq,
            timeline=self._timeline(),
        )

    # ------------------------------------------------------------------ the dates

    def _stages(self) -> list[Stage]:
        due = self._data.due_date
        return [
            Stage("reminder", notice_at(due - timedelta(days=self._data.remind_days_before))),
            Stage("due-date", notice_at(due)),
            Stage("overdue", notice_at(due + timedelta(days=1))),
        ]

    def _next_stage(self) -> Stage | None:
        return next((s for s in self._stages() if s.name not in self._done), None)

    def _next_alarm(self) -> Alarm | None:
        stage = self._next_stage()
        if stage is None:
            return None
        return Alarm(stage.at, f"21Vianet invoice: {stage.name}", self._take_stage)

    def _take_stage(self) -> None:
        passed = [s for s in self._stages() if s.name not in self._done and s.at <= workflow.now()]
        self._done.update(s.name for s in passed)
        # an invoice recorded late gets the notice that fits today, not every one it missed
        if passed[-1].name == "overdue":
            self._escalate()
        else:
            self._remind()

    def _today(self) -> date:
        return china_day(workflow.now())

    def _remind(self) -> None:
        self._reminders += 1
        days_left = (self._data.due_date - self._today()).days
        self._record(EventKind.REMINDER, WORKFLOW, f"finance reminded: due in {days_left} days")
        self._queue_email(FinanceVianetInvoiceDue(days_left=days_left))

    def _escalate(self) -> None:
        self._status = VianetInvoiceStatus.OVERDUE
        self._escalated_at = workflow.now()
        days_overdue = (self._today() - self._data.due_date).days
        self._record(
            EventKind.VIANET_INVOICE_OVERDUE,
            WORKFLOW,
            f"{days_overdue} days overdue: manager told",
        )
        self._queue_email(ManagerVianetInvoiceOverdue(days_overdue=days_overdue))

    def _attributes(self) -> TypedSearchAttributes:
        return TypedSearchAttributes([])  # it is found by its id: no attribute of its own

    def _publish_details(self) -> None:
        """Markdown for the UI's current details: amount, due date, reminders, what comes next."""
        data = self._data
        stage = None if self._finished() else self._next_stage()
        nxt = f"\n\nNext: {stage.name} on {stage.at:%Y-%m-%d %H:%M} CST" if stage else ""
        attention = self._attention_line()
        workflow.set_current_details(
            (f"**{attention}**\n\n" if attention else "")
            + f"**{self._status.value}** · {money(data.amount, data.currency)} due "
            f"{data.due_date.isoformat()} · reminders {self._reminders}{nxt}"
        )

    # ------------------------------------------------------------------ effects

    def _address(self, recipient: Recipient) -> str:
        match recipient:
            case Recipient.FINANCE:
                return str(self._data.finance_email)
            case Recipient.MANAGER:
                return str(self._data.manager_email)
        raise ValueError(f"a 21Vianet invoice sends no email to {recipient.value}")

    def _send_locale(self) -> Locale:
        return self._data.locale

    async def _send(self, email: SendEmail) -> EmailSent | ApplicationError:
        return await self._send_email(email, self._send_locale(), vianet_invoice=self.view())

    async def _carry_out(self, effect: SendEmail) -> None:
        await self._send(effect)

    async def _persist(self, events: list[CaseEvent]) -> None:
        await self._write(
            PERSIST_VIANET_INVOICE,
            PersistVianetInvoice(
                view=self.view().model_copy(update={"timeline": []}), seq=events[-1].seq
            ),
            f"Save 21Vianet invoice: {self._status.value}",
        )
