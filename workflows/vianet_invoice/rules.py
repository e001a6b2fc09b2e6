"""A 21Vianet invoice's rules, as a plain state machine: `VianetInvoice` is the invoice's one
state (the fields of `core.models.VianetInvoiceState`, carried whole into a next run). Finance is
reminded some days before the due date and on the day, a manager hears of it the day after if it
is still not marked paid, and marking it paid ends it. Notices fall at 09:00 China Standard Time,
when the finance team's day starts. No Temporal here: the shell is workflow.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from core.formatting import CHINA_STANDARD_TIME, china_day
from core.models import (
    Attention,
    EventKind,
    MarkVianetPaid,
    Recipient,
    RecordVianetInvoice,
    VianetInvoiceState,
    VianetInvoiceStatus,
)
from core.models.email import FinanceVianetInvoiceDue, ManagerVianetInvoiceOverdue
from core.models.email_data import EmailData
from workflows.effects import WORKFLOW, Email, Flag, Record

NOTICE_TIME = time(9, 0)
# the person's clock may run a little ahead of the worker's: a payment "now" is not in the future
CLOCK_SKEW = timedelta(minutes=5)

Effect = Record | Email | Flag


def notice_at(day: date) -> datetime:
    return datetime.combine(day, NOTICE_TIME, tzinfo=CHINA_STANDARD_TIME)


@dataclass(frozen=True)
class Stage:
    name: str
    at: datetime


class VianetInvoice(VianetInvoiceState):
    """The invoice's state (no field of its own) and its transitions."""

    @classmethod
    def record(cls, data: RecordVianetInvoice, now: datetime) -> tuple[VianetInvoice, list[Effect]]:
        invoice = cls(invoice=data.model_copy(update={"carried": None}), recorded_at=now)
        recorded = Record(
            EventKind.VIANET_INVOICE_RECORDED,
            data.recorded_by,
            f"{data.currency} {data.amount:,.2f} due {data.due_date.isoformat()}",
            {"amount": str(data.amount), "due_date": data.due_date.isoformat()},
        )
        return invoice, [recorded]

    @classmethod
    def carried(cls, state: VianetInvoiceState) -> VianetInvoice:
        return cls.model_validate(state.model_dump())

    @property
    def finished(self) -> bool:
        return self.status is VianetInvoiceStatus.PAID

    def refusal(self, action: MarkVianetPaid, now: datetime) -> str | None:
        if self.payment is not None:
            return (
                f"21Vianet invoice {self.invoice.invoice_number} is already marked paid "
                f"(reference {self.payment.reference})"
            )
        if action.paid_at > now + CLOCK_SKEW:
            return f"paid_at: {action.paid_at.isoformat()} is in the future"
        return None

    def mark_paid(self, action: MarkVianetPaid, now: datetime) -> list[Effect]:
        self.payment = action
        self.status = VianetInvoiceStatus.PAID
        paid_at = {"paid_at": action.paid_at.isoformat()}
        return [Record(EventKind.VIANET_INVOICE_PAID, action.by, action.reference, paid_at)]

    # ------------------------------------------------------------------ the dates

    def stages(self) -> list[Stage]:
        due = self.invoice.due_date
        return [
            Stage("reminder", notice_at(due - timedelta(days=self.invoice.remind_days_before))),
            Stage("due-date", notice_at(due)),
            Stage("overdue", notice_at(due + timedelta(days=1))),
        ]

    def next_stage(self) -> Stage | None:
        if self.finished:
            return None
        return next((s for s in self.stages() if s.name not in self.stages_done), None)

    def fire(self, now: datetime) -> list[Effect]:
        """The next stage fell due: one notice, the one that fits today (an invoice recorded late
        gets that, not every one it missed)."""
        passed = [s for s in self.stages() if s.name not in self.stages_done and s.at <= now]
        if self.finished or not passed:
            return []
        self.stages_done.extend(s.name for s in passed)
        if passed[-1].name == "overdue":
            return self._escalate(now)
        days_left = (self.invoice.due_date - china_day(now)).days
        if days_left < 0:
            return []  # recorded after its due date, before the overdue notice: the manager's next
        self.reminders += 1
        text = f"finance reminded: due in {days_left} days"
        return [
            Record(EventKind.REMINDER, WORKFLOW, text),
            self._email(FinanceVianetInvoiceDue(days_left=days_left)),
        ]

    def _escalate(self, now: datetime) -> list[Effect]:
        self.status = VianetInvoiceStatus.OVERDUE
        self.escalated_at = now
        days_overdue = (china_day(now) - self.invoice.due_date).days
        text = f"{days_overdue} days overdue: manager told"
        return [
            Record(EventKind.VIANET_INVOICE_OVERDUE, WORKFLOW, text),
            self._email(ManagerVianetInvoiceOverdue(days_overdue=days_overdue)),
            # in 需要处理 until it is marked paid (the email above tells the manager)
            Flag(
                f"{days_overdue} days overdue: pay 21Vianet and mark it paid",
                Attention.PAYABLE_OVERDUE,
            ),
        ]

    def address(self, recipient: Recipient) -> str:
        match recipient:
            case Recipient.FINANCE:
                return str(self.invoice.finance_email)
            case Recipient.MANAGER:
                return str(self.invoice.manager_email)
        raise ValueError(f"a 21Vianet invoice sends no email to {recipient.value}")

    def _email(self, data: EmailData) -> Email:
        return Email(data, self.address(data.recipient))
