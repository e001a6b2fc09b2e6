"""A customer's account: one per tenant, the only writer of its subscriptions in Partner Center.

Each invoice's collections places holds on subscriptions (non-payment); an agent's fraud report
places fraud holds. A subscription is suspended when its first hold arrives and reactivated when
none is left, so paying one invoice never lifts what another invoice, or fraud, holds. Overrides
per customer (exempt from suspension, a longer grace, another policy file) live here too.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.calendar import BusinessCalendar
from core.models.collections import (
    CollectionsPolicy,
    CollectionsView,
    NoticeState,
    SubscriptionStatus,
)
from core.models.email import CollectionsFinalNotice, CollectionsPaymentFailed, CollectionsReminder
from core.models.email_data import EmailTemplate
from core.models.ledger import LedgerState, LedgerView
from core.models.shared import (
    Actor,
    Attention,
    CaseEvent,
    Customer,
    Guid,
    InvoiceId,
    LogState,
    LongText,
    ShortText,
    Strict,
)

# holds one account keeps: far above any customer's subscriptions times its unpaid invoices
MAX_HOLDS = 2_000
# a policy file another customer is run by: a name in the config folder, nothing else
PolicyFile = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,80}\.toml$")]


class HoldReason(StrEnum):
    NON_PAYMENT = "non-payment"  # an invoice's collections: lifted when it is paid or settled
    FRAUD = "fraud"  # lifted only by a manager (lift-fraud --reason)


class Hold(Strict):
    """Why one subscription stays suspended: one per (subscription, reason, invoice)."""

    subscription_id: str
    reason: HoldReason
    invoice_id: str
    placed_at: datetime
    by: str

    @property
    def key(self) -> tuple[str, HoldReason, str]:
        return self.subscription_id, self.reason, self.invoice_id


class PlaceHolds(Strict):
    """From an invoice's collections: hold these subscriptions (a signal, checked on arrival)."""

    invoice_id: InvoiceId
    reason: HoldReason
    subscription_ids: list[Guid] = Field(min_length=1, max_length=200)
    customer: Customer
    by: Actor


class ReleaseHolds(Strict):
    """From an invoice's collections once it is paid, credited or waived: its non-payment holds
    go. `paid` (with the invoice's view) asks the account to tell the customer what the payment
    changed: reactivated, or still held by something else."""

    invoice_id: InvoiceId
    why: ShortText
    paid: Decimal | None = None
    view: CollectionsView | None = None


class LiftFraud(Strict):
    """A manager lifts the fraud holds: every one of the account's, or one invoice's."""

    reason: LongText
    by: Actor
    invoice_id: InvoiceId | None = None


class AccountOverrides(Strict):
    """How this customer differs from the partner's policy; recorded with who and why."""

    exempt_from_suspension: bool = False  # non-payment never suspends (fraud still does)
    extra_grace_days: int = Field(default=0, ge=0, le=90)  # the suspension comes this much later
    policy_file: PolicyFile | None = None  # another collections policy, in config/


class SetOverrides(Strict):
    overrides: AccountOverrides
    reason: LongText
    by: Actor


# the notices one conversation with the customer carries: one email a kind a day, for all invoices
NoticeData = Annotated[
    CollectionsPaymentFailed | CollectionsReminder | CollectionsFinalNotice,
    Field(discriminator="template"),
]


class Notice(Strict):
    """From an invoice's collections: a policy notice for the account to send (with the
    customer's other notices of the same kind, never two of one kind the same day)."""

    data: NoticeData
    view: CollectionsView


class NoticeOutcome(Strict):
    """From the account to an invoice's collections: what became of its notice."""

    template: EmailTemplate
    state: NoticeState


class PaymentLetter(Strict):
    """A letter owed to the customer about an invoice's payment: written once Partner Center
    answered for every subscription it is about, sent in the customer's business hours."""

    view: CollectionsView
    amount: Decimal
    # suspended (or being suspended) when the invoice was paid; a follow-up's: what it confirms
    subscriptions: list[str]
    reactivated: list[str] = Field(default_factory=list)  # of those, what the account reactivated
    follow_up: bool = False


class AccountState(BaseModel):
    """The account, whole: what its rules (workflows/account/rules.py) read and change, and what
    its next run carries (continue-as-new)."""

    model_config = ConfigDict(extra="forbid")

    customer: Customer
    calendar: BusinessCalendar | None = None  # the customer's business hours (None: any hour)
    # under SendGrid a notice counts as delivered when SendGrid says so (else once written)
    told_when_delivered: bool = False
    holds: list[Hold] = Field(default_factory=list)
    suspended: list[str] = Field(default_factory=list)  # as Partner Center last answered
    # asked of Partner Center, not answered yet
    changing: dict[str, SubscriptionStatus] = Field(default_factory=dict)
    changes: dict[str, int] = Field(default_factory=dict)  # per subscription, changes asked (keys)
    overrides: AccountOverrides = Field(default_factory=AccountOverrides)
    # Partner Center refused to change these: tried again at the next event, a manager told
    refused: list[str] = Field(default_factory=list)
    pending: list[Notice] = Field(default_factory=list)  # notices waiting for their day
    last_sent: dict[str, str] = Field(default_factory=dict)  # kind -> the day it last went
    # email key -> the notice's kind, then the invoices it named (until SendGrid answers)
    sent_notices: dict[str, list[str]] = Field(default_factory=dict)
    letters: list[PaymentLetter] = Field(default_factory=list)
    # the customer's credit balance per currency: overpayments, applications, refunds
    ledger: LedgerState = Field(default_factory=LedgerState)
    log: LogState = Field(default_factory=lambda: LogState(last_seq=0, emails_sent=0))


class StartAccount(Strict):
    customer: Customer
    policy: CollectionsPolicy  # its manager and team addresses
    # under SendGrid a notice counts as delivered when SendGrid says so (else once written)
    told_when_delivered: bool = False
    carried: AccountState | None = None


class AccountView(Strict):
    tenant_id: str
    workflow_id: str
    customer: Customer
    holds: list[Hold] = Field(default_factory=list)
    suspended_subscriptions: list[str] = Field(default_factory=list)
    overrides: AccountOverrides = Field(default_factory=AccountOverrides)
    ledger: LedgerView = Field(default_factory=LedgerView)
    needs_attention: str | None = None
    attention: Attention | None = None  # why a person must act, if one must
    event_count: int = 0
    timeline: list[CaseEvent] = Field(default_factory=list)

    @property
    def fraud(self) -> bool:
        return any(hold.reason is HoldReason.FRAUD for hold in self.holds)


class PersistAccount(Strict):
    """Upsert the ``accounts`` row and append new events (idempotent on tenant + seq)."""

    view: AccountView
    events: list[CaseEvent]
