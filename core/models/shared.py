"""The constrained types every domain shares, each defined once: money, ids, text, time, the
customer and the timeline event.

This package imports only pydantic and the standard library, so workflow code loads it cheaply.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)

CURRENCY = "CNY"
GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# an invoice, case or 21Vianet invoice number: what a workflow id and a database key can hold
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# the billing system's own ids of failures and payments
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _two_places(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite amount")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("must have at most two decimal places (fen)")
    return value.quantize(Decimal("0.01"))


def _above_zero(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a timezone (e.g. 2026-11-24T09:00:00+08:00)")
    return value


# Money is Decimal, never float: at most 2 places, at most 12 digits before the point.
Money = Annotated[
    Decimal, Field(ge=Decimal("0"), le=Decimal("999999999999.99")), AfterValidator(_two_places)
]
PositiveMoney = Annotated[Money, AfterValidator(_above_zero)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN, to_lower=True)]
InvoiceId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
CaseId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
ExternalId = Annotated[str, StringConstraints(pattern=EXTERNAL_ID_PATTERN)]
Actor = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
CompanyName = Annotated[ShortText, AfterValidator(_printable)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]
# a moment someone else gives us: without its offset it could be any of 24 hours
AwareTime = Annotated[datetime, AfterValidator(_aware)]


class Strict(BaseModel):
    """Base for every payload: unknown fields are an error, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Locale(StrEnum):
    ZH_CN = "zh-CN"
    EN_US = "en-US"


class Customer(Strict):
    tenant_id: Guid
    name: CompanyName
    email: EmailStr
    locale: Locale = Locale.ZH_CN


class EventKind(StrEnum):
    OPENED = "opened"
    ASSIGNED = "assigned"
    NOTE = "note"
    INFO_REQUESTED = "info-requested"
    CUSTOMER_REPLIED = "customer-replied"
    CUSTOMER_REMINDED = "customer-reminded"
    ESCALATED = "escalated"
    VIANET_TICKET = "21vianet-ticket"
    VIANET_FOLLOW_UP = "21vianet-follow-up"
    VIANET_RESPONSE = "21vianet-response"
    RESOLVED = "resolved"
    CUSTOMER_TOLD = "customer-told"
    CONFIRMED = "confirmed"
    REOPENED = "reopened"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"
    SLA_REMINDER = "sla-reminder"
    SLA_BREACHED = "sla-breached"
    EMAIL_SENT = "email-sent"
    EMAIL_BOUNCED = "email-bounced"
    REMINDER = "reminder"
    # collections
    BILLING_FAILED = "billing-failed"
    POLICY_STEP = "policy-step"
    PAYMENT_RECEIVED = "payment-received"
    DISPUTE_OPENED = "dispute-opened"
    DISPUTE_RESOLVED = "dispute-resolved"
    FRAUD_REPORTED = "fraud-reported"
    PROMISE_TO_PAY = "promise-to-pay"
    PROMISE_LAPSED = "promise-lapsed"
    RESUMED = "resumed"
    WAIVED = "waived"
    SUSPENDED = "suspended"
    REACTIVATED = "reactivated"
    PARTNER_CENTER_ERROR = "partner-center-error"
    HANDED_OFF = "handed-off"
    SETTLED = "settled"
    LINKED = "linked"
    # the partner's own invoices from 21Vianet
    VIANET_INVOICE_RECORDED = "21vianet-invoice-recorded"
    VIANET_INVOICE_OVERDUE = "21vianet-invoice-overdue"
    VIANET_INVOICE_PAID = "21vianet-invoice-paid"


class CaseEvent(Strict):
    """One line of a workflow's timeline (cases, collections and 21Vianet invoices alike)."""

    seq: int = Field(ge=1)
    at: datetime
    kind: EventKind
    actor: str
    text: str = ""
    data: dict[str, str] = Field(default_factory=dict)
