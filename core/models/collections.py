"""Collections: the policy, the billing system's failures and payments, the agents' actions on an
unpaid invoice, what it shows and stores, and the Partner Center changes it asks for."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from core.calendar import BusinessCalendar
from core.models.case_policy import CasePolicy
from core.models.email import STEP_EMAILS
from core.models.email_data import EmailTemplate
from core.models.shared import (
    CURRENCY,
    Attention,
    AwareTime,
    CaseEvent,
    Currency,
    Customer,
    ExternalId,
    Guid,
    InvoiceId,
    LogState,
    PositiveMoney,
    ShortText,
    Strict,
)

ZERO = Decimal("0.00")
ONE_DAY = timedelta(days=1)
# failures and payments one invoice takes: far above any billing run's retries, and bounded
MAX_REPORTS = 500


class CollectionsAction(StrEnum):
    NONE = "none"
    SUSPEND = "suspend"  # suspend every subscription on the invoice through Partner Center
    HAND_OFF = "hand-off"  # a manager takes the account over; the policy ends


class Approval(StrEnum):
    AUTO = "auto"  # the step is taken when it falls due
    MANAGER = "manager"  # a manager is asked (and reminded) and approves or refuses it


class NoticeState(StrEnum):
    """The final notice: a suspension follows only once it was delivered (or a person confirmed
    the contact)."""

    SENT = "sent"  # the provider took it; delivery not known yet
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # bounced, dropped or blocked: a person must look


class StepAnchor(StrEnum):
    FAILURE = "failure"  # days after the (first) billing failure
    SUSPENSION = "suspension"  # days after the subscriptions were suspended


class DayCount(StrEnum):
    """How a step's `day` counts, once the policy has a business calendar."""

    CALENDAR = "calendar"  # every day; the step then waits for the next opening
    BUSINESS = "business"  # working days only (holidays off, 调休 days on), in opening hours


class CollectionsStep(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,40}$")]
    day: int = Field(ge=0, le=400)
    after: StepAnchor = StepAnchor.FAILURE
    days: DayCount | None = None  # None: as the policy's `days`
    email: EmailTemplate | None = None
    action: CollectionsAction = CollectionsAction.NONE
    # only on the suspend step: "manager" asks a manager to approve the suspension
    approval: Approval = Approval.AUTO

    @field_validator("email")
    @classmethod
    def _a_step_email(cls, value: EmailTemplate | None) -> EmailTemplate | None:
        if value is not None and value not in STEP_EMAILS:
            names = ", ".join(sorted(t.value for t in STEP_EMAILS))
            raise ValueError(f"{value.value} is not sent by a policy step (one of: {names})")
        return value

    @model_validator(mode="after")
    def _does_something(self) -> CollectionsStep:
        if self.email is None and self.action is CollectionsAction.NONE:
            raise ValueError(f"step {self.name}: needs an email, an action, or both")
        if self.approval is not Approval.AUTO and self.action is not CollectionsAction.SUSPEND:
            raise ValueError(f"step {self.name}: approval is for the suspend step only")
        return self


class CollectionsPolicy(Strict):
    """The partner's collections policy: dated steps (``config/collections_policy.toml``)."""

    steps: list[CollectionsStep] = Field(min_length=1)
    # how long one of the steps' days lasts: a day; a demo policy shortens it so that a month of
    # collections passes in minutes (config/collections_policy.demo.toml), with no calendar
    day_length: timedelta = Field(default=ONE_DAY, ge=timedelta(seconds=1), le=ONE_DAY)
    # after the hand-off the workflow waits this long for a payment or a waiver, then ends
    close_after_hand_off: timedelta = timedelta(days=30)
    # the data of a suspended subscription is deleted this long after suspension (Partner Center)
    data_deletion_after: timedelta = timedelta(days=90)
    promise_max: timedelta = timedelta(days=30)
    # a customer's reply to a notice holds the suspension this long for an agent's triage
    reply_triage_wait: timedelta = timedelta(days=3)
    manager_email: EmailStr = "billing-manager@partner.example.cn"
    team_email: EmailStr = "billing-support@partner.example.cn"
    # a suspension waiting for a manager's approval: the manager is reminded this often
    approval_reminder_every: timedelta = timedelta(days=1)
    approval_reminders_max: int = Field(default=10, ge=0, le=100)
    # how the steps' days count (a step may say otherwise); only with a calendar
    days: DayCount = DayCount.CALENDAR
    # China's working days and hours, set when the workflow starts (core/calendar.py); None:
    # steps and emails at any hour, as before the calendar
    calendar: BusinessCalendar | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CollectionsPolicy:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError("steps: step names must be unique")
        suspends = [s for s in self.steps if s.action is CollectionsAction.SUSPEND]
        if len(suspends) > 1:
            raise ValueError("steps: at most one suspend step")
        if any(s.after is StepAnchor.SUSPENSION for s in self.steps) and not suspends:
            raise ValueError("steps: a step after suspension needs a suspend step")
        for anchor in StepAnchor:
            days = [s.day for s in self.steps if s.after is anchor]
            if days != sorted(days):
                raise ValueError(f"steps: days after {anchor.value} must be in order")
        return self

    def counts(self, step: CollectionsStep) -> DayCount:
        return step.days or self.days

    @property
    def suspension_day(self) -> int | None:
        return next((s.day for s in self.steps if s.action is CollectionsAction.SUSPEND), None)

    def for_customer(self, exempt: bool, extra_grace_days: int) -> CollectionsPolicy:
        """This policy as one customer's overrides change it: exempt hands the invoice to a
        manager instead of suspending, and drops what would follow the suspension; a longer
        grace moves the suspension (and any later step dated from the failure) later."""
        steps = self.steps
        suspension = self.suspension_day
        if exempt:  # a manager takes the invoice over when the suspension would have come
            steps = [
                s.model_copy(
                    update={
                        "action": CollectionsAction.HAND_OFF,
                        "email": EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF,
                        "approval": Approval.AUTO,
                    }
                )
                if s.action is CollectionsAction.SUSPEND
                else s
                for s in steps
                if s.after is StepAnchor.FAILURE
            ]
        elif extra_grace_days and suspension is not None:
            steps = [
                s.model_copy(update={"day": s.day + extra_grace_days})
                if s.after is StepAnchor.FAILURE and s.day >= suspension
                else s
                for s in steps
            ]
        return self.model_validate({**self.model_dump(), "steps": [s.model_dump() for s in steps]})


class BillingFailure(Strict):
    """A failed payment reported by the billing system (one line of a billing run's failures)."""

    failure_id: ExternalId
    invoice_id: InvoiceId
    customer: Customer
    subscription_ids: list[Guid] = Field(min_length=1, max_length=200)
    amount_due: PositiveMoney
    currency: Currency = CURRENCY
    failed_at: AwareTime
    reason: ShortText = "payment failed"


class StartCollections(Strict):
    """Input of CollectionsWorkflow (the first failure; later ones arrive as updates)."""

    failure: BillingFailure
    policy: CollectionsPolicy
    case_policy: CasePolicy = Field(default_factory=CasePolicy)
    # the customer's overrides (their account) that shaped `policy`, as a line for the timeline
    overridden: ShortText | None = None
    # a run continued as new carries the state of the one before
    carried: CollectionsState | None = None


class CollectionsStatus(StrEnum):
    ACTIVE = "active"
    PAUSED_DISPUTE = "paused-dispute"
    PAUSED_PROMISE = "paused-promise"
    HANDED_OFF = "handed-off"
    PAID = "paid"
    CREDITED = "credited"
    WAIVED = "waived"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in (
            CollectionsStatus.PAID,
            CollectionsStatus.CREDITED,
            CollectionsStatus.WAIVED,
            CollectionsStatus.EXPIRED,
        )


class CollectionsView(Strict):
    invoice_id: str
    workflow_id: str
    status: CollectionsStatus
    stage: str  # the last policy step carried out, or the pause/end reason
    customer: Customer
    subscription_ids: list[str]
    currency: str
    amount_due: Decimal  # what the failures reported
    paid: Decimal  # what the payments settled of the invoice
    credited: Decimal
    balance: Decimal
    first_failed_at: datetime
    # the policy this invoice runs (a customer's overrides shape it), without its calendar
    policy: CollectionsPolicy | None = None
    waived: Decimal = Decimal("0.00")
    # paid beyond the balance: the customer's credit, for finance to apply or refund
    credit: Decimal = Decimal("0.00")
    overpayment: Overpayment | None = None
    # paid with the customer's credit balance (finance applied it from their account)
    credit_applied: Decimal = Decimal("0.00")
    failures: list[str]  # failure ids seen
    next_step: str | None = None
    next_step_at: datetime | None = None
    suspended_subscriptions: list[str] = Field(default_factory=list)
    suspended_at: datetime | None = None
    data_deletion_at: datetime | None = None
    fraud: bool = False
    linked_case_id: str | None = None
    promised_until: datetime | None = None
    # a suspension that waits for a manager's approval (since it was asked)
    approval_asked_at: datetime | None = None
    final_notice: NoticeState | None = None
    # set while a step failed or a wait ran out: what a person must do
    needs_attention: str | None = None
    attention: Attention | None = None  # why a person must act, if one must
    # every event is in the database; the view has the last ones (long texts cut)
    event_count: int = 0
    timeline: list[CaseEvent] = Field(default_factory=list)


class PersistCollections(Strict):
    """Upsert the ``collections`` row and append new events (idempotent on invoice + seq)."""

    view: CollectionsView
    events: list[CaseEvent]


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class ChangeSubscription(Strict):
    """Suspend or reactivate one subscription through Partner Center; idempotent on ``key``."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    tenant_id: Guid
    subscription_id: Guid
    status: SubscriptionStatus
    invoice_id: str
    reason: str


class SubscriptionChanged(Strict):
    subscription_id: str
    status: SubscriptionStatus
    changed: bool  # False when it already had that status
    backend: str  # "partner-center" or "dry-run"


class Triage(StrEnum):
    """Why a suspension waits for a person to look."""

    REPLY = "customer replied"  # for the policy's reply_triage_wait, then it goes on
    UNDELIVERED = "notice undelivered"  # until a person corrects or confirms the contact


class Overpayment(Strict):
    """A payment above the balance: the invoice took what it owed, the rest is the customer's
    credit (finance applies it to another invoice or refunds it)."""

    payment_id: str
    received: Decimal
    applied: Decimal
    credit: Decimal


class CollectionsState(BaseModel):
    """One invoice's collections, declared once: what the rules change, what a run shows, and
    what the next run (continue-as-new) carries (workflows/collections/rules.py acts on it)."""

    model_config = ConfigDict(extra="forbid")

    invoice_id: str
    policy: CollectionsPolicy
    case_policy: CasePolicy
    customer: Customer
    currency: str
    subscription_ids: list[str]
    amount_due: Decimal
    paid: Decimal = ZERO
    credited: Decimal = ZERO
    waived: Decimal = ZERO
    credit: Decimal = ZERO
    overpayment: Overpayment | None = None
    payments: dict[str, Decimal] = Field(default_factory=dict)  # payment id -> amount
    # the customer's credit (their account) this invoice took, per application id
    credit_applied: Decimal = ZERO
    applications: dict[str, Decimal] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)
    reason: str
    status: CollectionsStatus = CollectionsStatus.ACTIVE
    last_step: str | None = None
    started_at: datetime
    steps_done: list[str] = Field(default_factory=list)
    offset: timedelta = timedelta(0)  # total paused time: the policy's clock stood still
    paused_at: datetime | None = None
    promised_until: datetime | None = None
    held: list[str] = Field(default_factory=list)  # what this invoice holds through the account
    suspended_at: datetime | None = None
    offset_at_suspension: timedelta = timedelta(0)
    fraud: bool = False
    linked_case: str | None = None
    handed_off_at: datetime | None = None
    triage: Triage | None = None
    triage_until: datetime | None = None  # None: until a person acts
    approval_asked_at: datetime | None = None
    approval_reminders: int = 0
    notice: NoticeState | None = None  # the final notice
    notice_at: datetime | None = None
    log: LogState = Field(default_factory=lambda: LogState(last_seq=0, emails_sent=0))


StartCollections.model_rebuild()
CollectionsView.model_rebuild()
