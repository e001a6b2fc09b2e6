"""The partner's payable to 21Vianet: an invoice 21Vianet sent, its reminders and its payment."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from core.models.shared import (
    ID_PATTERN,
    Actor,
    Attention,
    AwareTime,
    CaseEvent,
    Locale,
    LogState,
    PositiveMoney,
    ShortText,
    Strict,
)

VianetInvoiceNumber = Annotated[str, StringConstraints(strip_whitespace=True, pattern=ID_PATTERN)]


class VianetInvoiceStatus(StrEnum):
    UNPAID = "unpaid"
    OVERDUE = "overdue"  # not marked paid after its due date: a manager was told
    PAID = "paid"


class RecordVianetInvoice(Strict):
    """Input of VianetInvoiceWorkflow: an invoice 21Vianet sent the partner, due whether or not
    the partner's customers pay."""

    invoice_number: VianetInvoiceNumber
    amount: PositiveMoney
    # 21Vianet bills its partners in renminbi
    currency: Literal["CNY"] = "CNY"
    due_date: date  # a calendar day in China Standard Time
    recorded_by: Actor
    finance_email: EmailStr
    manager_email: EmailStr
    remind_days_before: int = Field(default=3, ge=1, le=60)
    locale: Locale = Locale.ZH_CN
    # a run continued as new carries the state of the one before (its history is short: three
    # notices and a payment, so in practice it never does)
    carried: VianetInvoiceState | None = None


class MarkVianetPaid(Strict):
    paid_at: AwareTime
    reference: ShortText  # the bank transfer's reference
    by: Actor


class VianetInvoiceView(Strict):
    invoice_number: str
    workflow_id: str
    status: VianetInvoiceStatus
    amount: Decimal
    currency: str
    due_date: date
    recorded_at: datetime
    recorded_by: str
    finance_email: str
    manager_email: str
    remind_days_before: int
    reminders_sent: int = 0
    next_reminder: str | None = None
    next_reminder_at: datetime | None = None
    escalated_at: datetime | None = None
    paid_at: datetime | None = None
    paid_reference: str | None = None
    paid_by: str | None = None
    # set while a step failed or a wait ran out: what a person must do
    needs_attention: str | None = None
    attention: Attention | None = None  # why a person must act, if one must
    # every event is in the database; the view has the last ones (long texts cut)
    event_count: int = 0
    timeline: list[CaseEvent] = Field(default_factory=list)


class PersistVianetInvoice(Strict):
    """Upsert the ``vianet_invoices`` row; a state older than the stored one is ignored."""

    view: VianetInvoiceView
    seq: int = Field(ge=0)  # how many events the state includes: orders the writes


class VianetInvoiceState(BaseModel):
    """A 21Vianet invoice, whole: the one state its rules (workflows/vianet_invoice/rules.py)
    change and what a run carries into the next. Mutable: each transition changes it in place."""

    model_config = ConfigDict(extra="forbid")

    invoice: RecordVianetInvoice  # as recorded (its `carried` empty)
    status: VianetInvoiceStatus = VianetInvoiceStatus.UNPAID
    recorded_at: datetime
    stages_done: list[str] = Field(default_factory=list)
    reminders: int = 0
    escalated_at: datetime | None = None
    payment: MarkVianetPaid | None = None
    # the shell's event log, set when a run continues as new
    log: LogState | None = None


RecordVianetInvoice.model_rebuild()
