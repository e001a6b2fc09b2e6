"""A customer's credit balance: money received beyond their bills, one ledger per currency, kept by
their account (AccountWorkflow) and copied to the database (``credit_balances``, ``refunds``).

Money comes in as an invoice's overpayment (CREDIT_KEPT from its collections) or as a payment on
an invoice whose collections ended (a duplicate transfer, a payment after a credit). It goes out
applied to another open invoice of theirs (APPLY_CREDIT to its collections, which answers with
CREDIT_SETTLED what it took) or refunded (above ``REFUND_APPROVAL_ABOVE``, once a manager
approved). Per currency, always: received = applied + balance + refunded.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.models.collections import ZERO
from core.models.shared import (
    Actor,
    Currency,
    ExternalId,
    Guid,
    InvoiceId,
    LongText,
    PositiveMoney,
    ShortText,
    Strict,
)

RefundId = Annotated[str, StringConstraints(pattern=r"^RF-[0-9A-Z]{1,40}$")]
ApplicationId = Annotated[str, StringConstraints(pattern=r"^CA-[0-9A-Z]{1,40}$")]
# payments an account takes itself (after their invoice ended): far above any customer's mistakes
MAX_DIRECT_PAYMENTS = 2_000
# refunds and applications an account keeps in its state once decided (the database keeps all)
DECIDED_KEPT = 50


class CreditBalance(BaseModel):
    """One currency of a customer's ledger: received = applied + balance + refunded."""

    model_config = ConfigDict(extra="forbid")

    currency: str
    received: Decimal = ZERO  # overpayments and payments after their invoice ended
    applied: Decimal = ZERO  # to other invoices (taken, or on their way to the invoice)
    refunded: Decimal = ZERO
    reserved: Decimal = ZERO  # of the balance: refunds waiting for a manager's approval

    @property
    def balance(self) -> Decimal:
        return self.received - self.applied - self.refunded

    @property
    def available(self) -> Decimal:
        """What finance may apply or refund now."""
        return self.balance - self.reserved


class RefundStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting-approval"  # above REFUND_APPROVAL_ABOVE: a manager decides
    REFUNDED = "refunded"
    REFUSED = "refused"  # by a manager: the amount is the customer's credit again


class Refund(Strict):
    refund_id: str
    currency: str
    amount: Decimal
    reason: str
    requested_by: str
    requested_at: datetime
    status: RefundStatus
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision: str | None = None


class Application(Strict):
    """Credit on its way to an invoice: debited here, the invoice answers what it took."""

    application_id: str
    invoice_id: str
    currency: str
    amount: Decimal
    by: str
    at: datetime


# -- inputs


class CreditKept(Strict):
    """From an invoice's collections: a payment left this much beyond the balance (a signal, taken
    once per invoice and payment id)."""

    invoice_id: InvoiceId
    tenant_id: Guid
    payment_id: ExternalId
    currency: Currency
    amount: PositiveMoney


class UnappliedPayment(Strict):
    """A payment for an invoice whose collections ended (a duplicate transfer, a payment after a
    credit): the whole of it is the customer's credit. The same id again counts once; with
    another amount it is refused, naming both."""

    payment_id: ExternalId
    invoice_id: InvoiceId
    currency: Currency
    amount: PositiveMoney
    by: Actor


class ApplyCredit(Strict):
    """Finance applies credit to another open invoice of the customer's."""

    invoice_id: InvoiceId
    currency: Currency
    amount: PositiveMoney
    by: Actor


class CreditApplication(Strict):
    """From the account to an invoice's collections: take up to `amount` of the customer's
    credit, and answer what was taken (CREDIT_SETTLED)."""

    application_id: str
    tenant_id: str
    currency: str
    amount: Decimal


class CreditSettled(Strict):
    """From an invoice's collections: what it took of an application (the rest comes back)."""

    application_id: str
    invoice_id: str
    applied: Decimal
    returned: Decimal
    balance: Decimal  # what the invoice still owes after it (the letter says so)


class RequestRefund(Strict):
    """Finance returns credit to the customer (by bank transfer, outside this system).
    `approval_above` is the service's REFUND_APPROVAL_ABOVE for the currency (None: never)."""

    currency: Currency
    amount: PositiveMoney
    reason: ShortText
    by: Actor
    approval_above: Decimal | None = None


class DecideRefund(Strict):
    """A manager approves or refuses a refund awaiting approval."""

    refund_id: RefundId
    reason: LongText
    by: Actor


class LedgerView(Strict):
    """What the account shows of its ledger (and persists)."""

    balances: list[CreditBalance] = Field(default_factory=list)
    refunds: list[Refund] = Field(default_factory=list)
    applications: list[Application] = Field(default_factory=list)  # on their way


class LedgerState(BaseModel):
    """The ledger, whole, inside the account's state (carried through continue-as-new)."""

    model_config = ConfigDict(extra="forbid")

    balances: dict[str, CreditBalance] = Field(default_factory=dict)  # by currency
    # payment ids the ledger took: credit kept ("invoice/payment") and direct payments ("payment")
    payments: dict[str, Decimal] = Field(default_factory=dict)
    refunds: list[Refund] = Field(default_factory=list)
    applications: list[Application] = Field(default_factory=list)
    issued: int = 0  # refund and application numbers given
