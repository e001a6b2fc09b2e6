"""The partner's payable to 21Vianet: an invoice 21Vianet sent, its reminders and its payment."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints

from core.models.shared import (
    ID_PATTERN,
    Actor,
    AwareTime,
    CaseEvent,
    Locale,
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
    timeline: list[CaseEvent] = Field(default_factory=list)


class PersistVianetInvoice(Strict):
    """Upsert the ``vianet_invoices`` row; a state older than the stored one is ignored."""

    view: VianetInvoiceView
    seq: int = Field(ge=0)  # how many events the state includes: orders the writes
