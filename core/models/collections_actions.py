"""What people and systems ask of an invoice's collections: a payment, a dispute and its
outcome, a reply and its triage, a promise, a waiver, a manager's decision (each a signal's or an
update's input)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import (
    EmailStr,
)

from core.models.case import Outcome
from core.models.collections import (
    ZERO,
)
from core.models.shared import (
    CURRENCY,
    MONEY_MAX,
    Actor,
    AwareTime,
    CaseId,
    Currency,
    ExternalId,
    InvoiceId,
    LongText,
    Money,
    PositiveMoney,
    Strict,
)


class PaymentReport(Strict):
    """A payment as the billing system reports it (`POST /v1/payments`): who recorded it is the
    caller that signed the request, never a field."""

    payment_id: ExternalId
    invoice_id: InvoiceId
    amount: PositiveMoney
    currency: Currency = CURRENCY
    received_at: AwareTime

    def recorded_by(self, caller: str) -> PaymentReceived:
        return PaymentReceived.model_validate({**self.model_dump(), "by": caller})


class PaymentReceived(PaymentReport):
    by: Actor = "billing-system"


class OpenDispute(Strict):
    """The customer disputes the invoice: link an existing case, or open one."""

    case_id: CaseId | None = None  # an existing case; None opens a new one
    description: LongText
    disputed_amount: Money | None = None  # default: the whole balance
    by: Actor


class DisputeOutcome(Strict):
    """Sent by the linked BillingCaseWorkflow when its customer has been told the resolution.

    A signal cannot be refused before it lands, so this takes what any sender may send and the
    collections workflow checks it (`problem`); what it refuses changes nothing."""

    case_id: str
    outcome: Outcome | None  # None: the case was withdrawn
    credit_amount: Decimal | None = None
    # the case's customer and currency: another customer's case never credits this invoice
    tenant_id: str | None = None
    currency: str | None = None

    def problem(self, tenant_id: str, currency: str) -> str | None:
        """Why this outcome cannot be applied to an invoice of `tenant_id` in `currency`."""
        credit = self.credit_amount
        if credit is not None and not (
            credit.is_finite() and ZERO <= credit <= MONEY_MAX and credit.as_tuple().exponent >= -2  # type: ignore[operator]
        ):
            return f"credit_amount {credit} is not an amount between 0 and {MONEY_MAX}"
        if self.tenant_id is not None and self.tenant_id != tenant_id:
            return f"tenant_id: the case is for tenant {self.tenant_id}, the invoice {tenant_id}"
        if self.currency is not None and self.currency != currency:
            return f"currency: the case is in {self.currency}, the invoice in {currency}"
        return None


class CollectionsReply(Strict):
    """A customer's email in reply to a notice (service/inbound.py)."""

    text: LongText
    by: Actor


class TriageReply(Strict):
    """An agent has looked at a reply or an undelivered notice: a dispute and a promise to pay
    have their own actions; this is for "no action", or "the contact is right" after a bounce."""

    decision: Literal["no-action", "contact-confirmed"]
    by: Actor


class ResumePolicy(Strict):
    """A manager resumes a paused policy (a dispute or a promise that will not end by itself)."""

    reason: LongText
    by: Actor


class ReportFraud(Strict):
    reason: LongText
    by: Actor


class DecideSuspension(Strict):
    """A manager approves or refuses the suspension the policy asks for."""

    reason: LongText
    by: Actor


class CorrectContact(Strict):
    """The collections contact was wrong (a notice bounced): where notices go from now on."""

    email: EmailStr
    by: Actor


class PromiseToPay(Strict):
    until: AwareTime
    by: Actor


class Waive(Strict):
    reason: LongText
    by: Actor
