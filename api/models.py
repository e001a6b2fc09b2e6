"""Bodies of the HTTP intake that are not shared payloads: the case form and the answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import EmailStr, StringConstraints

from core.models import (
    CURRENCY,
    Actor,
    CaseId,
    Category,
    CollectionsStatus,
    Guid,
    InvoiceId,
    Locale,
    LongText,
    Money,
    Priority,
    ShortText,
    Strict,
)
from starter import Started


class CaseRequest(Strict):
    """Open a billing case: the same fields as `starter.py open`, flat as a web form sends them."""

    tenant_id: Guid
    name: ShortText
    email: EmailStr
    category: Category
    description: LongText
    locale: Locale = Locale.ZH_CN
    subscription_id: Guid | None = None
    invoice_id: InvoiceId | None = None
    amount: Money = Decimal("0.00")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = CURRENCY
    priority: Priority = Priority.NORMAL
    owner: EmailStr | None = None
    case_id: CaseId | None = None  # default: generated
    opened_by: Actor


class FailureAccepted(Strict):
    result: Started
    workflow_id: str


class PaymentRecorded(Strict):
    invoice_id: str
    workflow_id: str
    status: CollectionsStatus
    currency: str
    amount_due: Decimal
    paid: Decimal
    credited: Decimal
    balance: Decimal


class CaseOpened(Strict):
    case_id: str
    workflow_id: str
    status: str


class Problem(Strict):
    detail: str
