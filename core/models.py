"""Typed payloads shared by the workflows, the activities, the CLI and the tests.

Everything that crosses a Temporal boundary (workflow input, update, query, activity input/output)
is one of these pydantic models, carried by ``temporalio.contrib.pydantic``. This module imports
only pydantic and the standard library so workflow code can load it inside the sandbox cheaply.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

CURRENCY = "CNY"
GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _two_places(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite amount")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("must have at most two decimal places (fen)")
    return value.quantize(Decimal("0.01"))


# Money is Decimal, never float: at most 2 places, at most 12 digits before the point.
Money = Annotated[
    Decimal, Field(ge=Decimal("0"), le=Decimal("999999999999.99")), AfterValidator(_two_places)
]
Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN, to_lower=True)]
InvoiceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
CaseId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
Actor = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]
TicketNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{3,39}$")
]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Strict(BaseModel):
    """Base for every payload: unknown fields are an error, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Locale(StrEnum):
    ZH_CN = "zh-CN"
    EN_US = "en-US"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Category(StrEnum):
    INVOICE_DISPUTE = "invoice-dispute"
    UNEXPECTED_CHARGE = "unexpected-charge"
    REFUND_REQUEST = "refund-request"
    PAYMENT = "payment"
    CREDIT_NOTE = "credit-note"
    SUBSCRIPTION_CHANGE = "subscription-change"
    BILLING_QUESTION = "billing-question"
    FRAUD_CONCERN = "fraud-concern"


class CaseStatus(StrEnum):
    OPEN = "open"
    WAITING_ON_CUSTOMER = "waiting-on-customer"
    ESCALATION_PENDING = "escalation-pending"  # the agent must file the request in the portal
    WAITING_ON_VIANET = "waiting-on-21vianet"
    RESOLVING = "resolving"  # resolution decided, resolution email on its way
    RESOLVED = "resolved"  # customer told; reopen window running
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"

    @property
    def is_final(self) -> bool:
        return self in (CaseStatus.CLOSED, CaseStatus.WITHDRAWN)


# States in which the agent still works the case.
WORKING_STATUSES = frozenset(
    {
        CaseStatus.OPEN,
        CaseStatus.WAITING_ON_CUSTOMER,
        CaseStatus.ESCALATION_PENDING,
        CaseStatus.WAITING_ON_VIANET,
    }
)


class Outcome(StrEnum):
    CREDIT_ISSUED = "credit-issued"
    REFUND_ISSUED = "refund-issued"
    INVOICE_CORRECTED = "invoice-corrected"
    CHARGE_UPHELD = "charge-upheld"
    EXPLAINED = "explained"

    @property
    def needs_amount(self) -> bool:
        return self in (Outcome.CREDIT_ISSUED, Outcome.REFUND_ISSUED)


class Severity(StrEnum):
    """21Vianet service-request severities (initial response targets A 2 h, B 4 h, C 8 h)."""

    A = "A"
    B = "B"
    C = "C"


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


class EmailTemplate(StrEnum):
    """One folder per email under ``templates/email/<locale>/``."""

    # to the customer
    CASE_ACKNOWLEDGED = "case_acknowledged"
    INFO_REQUESTED = "info_requested"
    CUSTOMER_REMINDER = "customer_reminder"
    CASE_ESCALATED = "case_escalated"
    CASE_RESOLVED = "case_resolved"
    CASE_REOPENED = "case_reopened"
    CASE_CLOSED = "case_closed"
    CASE_WITHDRAWN = "case_withdrawn"
    # to the partner's staff
    OWNER_NEW_CASE = "owner_new_case"
    OWNER_SLA_REMINDER = "owner_sla_reminder"
    MANAGER_SLA_BREACH = "manager_sla_breach"
    OWNER_FILE_ESCALATION = "owner_file_escalation"
    OWNER_ESCALATION_REMINDER = "owner_escalation_reminder"
    OWNER_CUSTOMER_SILENT = "owner_customer_silent"
    OWNER_EMAIL_BOUNCED = "owner_email_bounced"
    OWNER_CASE_UPDATE = "owner_case_update"
    # collections, to the customer
    COLLECTIONS_PAYMENT_FAILED = "collections_payment_failed"
    COLLECTIONS_REMINDER = "collections_reminder"
    COLLECTIONS_FINAL_NOTICE = "collections_final_notice"
    COLLECTIONS_SUSPENDED = "collections_suspended"
    COLLECTIONS_DELETION_WARNING = "collections_deletion_warning"
    COLLECTIONS_PAYMENT_RECEIVED = "collections_payment_received"
    COLLECTIONS_REACTIVATED = "collections_reactivated"
    COLLECTIONS_FRAUD_SUSPENDED = "collections_fraud_suspended"
    COLLECTIONS_PROMISE_ACCEPTED = "collections_promise_accepted"
    COLLECTIONS_CLOSED = "collections_closed"
    # collections, to the partner's staff
    MANAGER_COLLECTIONS_HAND_OFF = "manager_collections_hand_off"
    MANAGER_PARTNER_CENTER_ERROR = "manager_partner_center_error"
    MANAGER_FRAUD_REPORTED = "manager_fraud_reported"
    # the partner's payable to 21Vianet, to its own finance team and a manager
    FINANCE_VIANET_INVOICE_DUE = "finance_vianet_invoice_due"
    MANAGER_VIANET_INVOICE_OVERDUE = "manager_vianet_invoice_overdue"

    @property
    def to_customer(self) -> bool:
        return not self.value.startswith(("owner_", "manager_", "finance_"))

    @property
    def reads_timeline(self) -> bool:
        """Whether the email quotes the timeline: only these carry it to the activity (a test
        checks the templates), so an email's input and the history stay small."""
        return self in (EmailTemplate.CUSTOMER_REMINDER, EmailTemplate.OWNER_CUSTOMER_SILENT)


# --------------------------------------------------------------------------- policy


class SlaTargets(Strict):
    first_response: timedelta
    resolution: timedelta

    @model_validator(mode="after")
    def _positive(self) -> SlaTargets:
        if self.first_response <= timedelta(0) or self.resolution <= timedelta(0):
            raise ValueError("SLA targets must be positive durations")
        if self.first_response > self.resolution:
            raise ValueError("first_response must not exceed resolution")
        return self


def _default_sla() -> dict[Priority, SlaTargets]:
    return {
        Priority.URGENT: SlaTargets(
            first_response=timedelta(hours=1), resolution=timedelta(hours=8)
        ),
        Priority.HIGH: SlaTargets(first_response=timedelta(hours=4), resolution=timedelta(days=1)),
        Priority.NORMAL: SlaTargets(
            first_response=timedelta(hours=8), resolution=timedelta(days=3)
        ),
        Priority.LOW: SlaTargets(first_response=timedelta(days=1), resolution=timedelta(days=5)),
    }


def _default_vianet_targets() -> dict[Severity, timedelta]:
    return {
        Severity.A: timedelta(hours=2),
        Severity.B: timedelta(hours=4),
        Severity.C: timedelta(hours=8),
    }


class CasePolicy(Strict):
    """How a case is run: read from ``config/case_policy.toml`` when the case opens.

    It travels inside the workflow input so a running case keeps the rules it started with.
    """

    sla: dict[Priority, SlaTargets] = Field(default_factory=_default_sla)
    # the owner is reminded when this fraction of an SLA target has elapsed
    sla_reminder_at: float = Field(default=0.75, gt=0, lt=1)
    customer_reminder_after: timedelta = timedelta(days=3)
    customer_reminders_max: int = Field(default=2, ge=0, le=10)
    ticket_reminder_every: timedelta = timedelta(hours=1)
    vianet_response_targets: dict[Severity, timedelta] = Field(
        default_factory=_default_vianet_targets
    )
    vianet_follow_up_every: timedelta = timedelta(days=1)
    reopen_window: timedelta = timedelta(days=7)
    team_email: EmailStr = "billing-support@partner.example.cn"
    manager_email: EmailStr = "billing-manager@partner.example.cn"

    @model_validator(mode="after")
    def _complete(self) -> CasePolicy:
        missing = [p.value for p in Priority if p not in self.sla]
        if missing:
            raise ValueError(f"sla: no targets for priority {', '.join(missing)}")
        missing = [s.value for s in Severity if s not in self.vianet_response_targets]
        if missing:
            raise ValueError(
                f"vianet_response_targets: no target for severity {', '.join(missing)}"
            )
        for name in (
            "customer_reminder_after",
            "ticket_reminder_every",
            "vianet_follow_up_every",
            "reopen_window",
        ):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be a positive duration")
        return self


# --------------------------------------------------------------------------- intake


class Customer(Strict):
    tenant_id: Guid
    name: ShortText
    email: EmailStr
    locale: Locale = Locale.ZH_CN

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value


class CaseDetails(Strict):
    """What the agent (or an intake) knows when the case opens."""

    customer: Customer
    subscription_id: Guid | None = None
    invoice_id: InvoiceId | None = None
    category: Category
    disputed_amount: Money = Decimal("0.00")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = CURRENCY
    description: LongText
    priority: Priority = Priority.NORMAL


class OpenCase(Strict):
    """Input of BillingCaseWorkflow."""

    case_id: CaseId
    details: CaseDetails
    owner: EmailStr | None = None
    opened_by: Actor
    policy: CasePolicy = Field(default_factory=CasePolicy)
    # set when the case disputes an invoice in collections: its outcome is reported there
    collections_workflow_id: str | None = None


# --------------------------------------------------------------------------- updates


class Assign(Strict):
    agent: EmailStr
    by: Actor


class AddNote(Strict):
    text: LongText
    by: Actor


class RequestInfo(Strict):
    question: LongText
    by: Actor


class CustomerReply(Strict):
    text: LongText
    by: Actor = "customer"


class Resolve(Strict):
    outcome: Outcome
    summary: LongText
    credit_amount: Money | None = None
    by: Actor

    @model_validator(mode="after")
    def _amount_matches_outcome(self) -> Resolve:
        if self.outcome.needs_amount:
            if self.credit_amount is None or self.credit_amount <= 0:
                raise ValueError(f"credit_amount: outcome {self.outcome.value} needs an amount > 0")
        elif self.credit_amount is not None:
            raise ValueError(f"credit_amount: outcome {self.outcome.value} takes no amount")
        return self


class Escalate(Strict):
    reason: LongText
    severity: Severity
    by: Actor


class VianetTicket(Strict):
    ticket_number: TicketNumber
    by: Actor


class VianetResponse(Strict):
    text: LongText
    by: Actor


class Confirm(Strict):
    by: Actor = "customer"


class Reopen(Strict):
    reason: LongText
    by: Actor = "customer"


class UpdateContact(Strict):
    email: EmailStr
    locale: Locale | None = None
    by: Actor


class Withdraw(Strict):
    reason: LongText
    by: Actor


# --------------------------------------------------------------------------- view


class CaseEvent(Strict):
    seq: int = Field(ge=1)
    at: datetime
    kind: EventKind
    actor: str
    text: str = ""
    data: dict[str, str] = Field(default_factory=dict)


class SlaClockView(Strict):
    name: str
    target: timedelta
    due_at: datetime | None  # None while paused or stopped
    paused: bool
    met_at: datetime | None
    breached: bool


class EscalationView(Strict):
    severity: Severity
    reason: str
    escalated_at: datetime
    request_title: str = ""
    request_body: str = ""
    ticket_number: str | None = None
    ticket_recorded_at: datetime | None = None
    response: str | None = None
    responded_at: datetime | None = None


class ResolutionView(Strict):
    outcome: Outcome
    summary: str
    credit_amount: Decimal | None
    resolved_by: str
    resolved_at: datetime
    customer_told_at: datetime | None = None


class CaseView(Strict):
    """What `view` answers and every update returns: the case as the CLI shows it."""

    case_id: str
    workflow_id: str
    collections_workflow_id: str | None = None
    status: CaseStatus
    details: CaseDetails
    owner: str | None
    opened_at: datetime
    opened_by: str
    closed_at: datetime | None = None
    waiting_for: str = ""
    next_deadline: datetime | None = None
    next_deadline_label: str = ""
    sla: list[SlaClockView] = Field(default_factory=list)
    sla_breached: bool = False
    escalations: list[EscalationView] = Field(default_factory=list)
    resolution: ResolutionView | None = None
    reopen_count: int = 0
    customer_reminders_sent: int = 0
    timeline: list[CaseEvent] = Field(default_factory=list)

    @property
    def escalated(self) -> bool:
        return bool(self.escalations)


# --------------------------------------------------------------------------- activities


class CaseRecord(Strict):
    """The row kept in the ``cases`` table: the case's latest state."""

    case_id: str
    workflow_id: str
    status: CaseStatus
    tenant_id: str
    customer_name: str
    customer_email: str
    locale: Locale
    subscription_id: str | None
    invoice_id: str | None
    category: Category
    priority: Priority
    disputed_amount: Decimal
    currency: str
    description: str
    owner: str | None
    opened_at: datetime
    closed_at: datetime | None
    sla_breached: bool
    escalated: bool
    reopen_count: int
    outcome: Outcome | None
    credit_amount: Decimal | None
    resolved_at: datetime | None
    first_response_at: datetime | None


class PersistCase(Strict):
    """Upsert the case row and append the events not yet stored (idempotent on case_id + seq)."""

    record: CaseRecord
    events: list[CaseEvent]


class EmailMessage(Strict):
    """One email, sent at most once per ``key``."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    template: EmailTemplate
    to: EmailStr
    locale: Locale
    case: CaseView | None = None
    collections: CollectionsView | None = None
    vianet_invoice: VianetInvoiceView | None = None
    extra: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_subject(self) -> EmailMessage:
        about = (self.case, self.collections, self.vianet_invoice)
        if sum(view is not None for view in about) != 1:
            raise ValueError(
                "an email is about exactly one case, one collections workflow "
                "or one 21Vianet invoice"
            )
        return self

    @property
    def subject_id(self) -> str:
        """The case id, the invoice id for collections, the 21Vianet invoice number: what the
        email log files it under."""
        if self.case is not None:
            return self.case.case_id
        if self.vianet_invoice is not None:
            return self.vianet_invoice.invoice_number
        assert self.collections is not None
        return self.collections.invoice_id


class EmailSent(Strict):
    key: str
    provider_message_id: str
    duplicate: bool = False  # True when the key had already been sent: nothing went out again


class PrepareEscalation(Strict):
    """Render the 21Vianet request for the agent and record the escalation."""

    case: CaseView
    escalation_no: int = Field(ge=1)
    severity: Severity
    reason: str


class EscalationRequest(Strict):
    title: str
    body: str


class RecordEscalation(Strict):
    """Keep the ``vianet_escalations`` row current (ticket number, answer)."""

    case_id: str
    escalation_no: int = Field(ge=1)
    escalation: EscalationView


# --------------------------------------------------------------------------- collections


class CollectionsAction(StrEnum):
    NONE = "none"
    SUSPEND = "suspend"  # suspend every subscription on the invoice through Partner Center
    HAND_OFF = "hand-off"  # a manager takes the account over; the policy ends


class StepAnchor(StrEnum):
    FAILURE = "failure"  # days after the (first) billing failure
    SUSPENSION = "suspension"  # days after the subscriptions were suspended


class CollectionsStep(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,40}$")]
    day: int = Field(ge=0, le=400)
    after: StepAnchor = StepAnchor.FAILURE
    email: EmailTemplate | None = None
    action: CollectionsAction = CollectionsAction.NONE

    @model_validator(mode="after")
    def _does_something(self) -> CollectionsStep:
        if self.email is None and self.action is CollectionsAction.NONE:
            raise ValueError(f"step {self.name}: needs an email, an action, or both")
        return self


class CollectionsPolicy(Strict):
    """The partner's collections policy: dated steps (``config/collections_policy.toml``)."""

    steps: list[CollectionsStep] = Field(min_length=1)
    # after the hand-off the workflow waits this long for a payment or a waiver, then ends
    close_after_hand_off: timedelta = timedelta(days=30)
    # the data of a suspended subscription is deleted this long after suspension (Partner Center)
    data_deletion_after: timedelta = timedelta(days=90)
    promise_max: timedelta = timedelta(days=30)
    manager_email: EmailStr = "billing-manager@partner.example.cn"
    team_email: EmailStr = "billing-support@partner.example.cn"

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

    @property
    def suspension_day(self) -> int | None:
        return next((s.day for s in self.steps if s.action is CollectionsAction.SUSPEND), None)


class BillingFailure(Strict):
    """A failed payment reported by the billing system (one line of a billing run's failures)."""

    failure_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    invoice_id: InvoiceId
    customer: Customer
    subscription_ids: list[Guid] = Field(min_length=1, max_length=200)
    amount_due: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = CURRENCY
    failed_at: datetime
    reason: ShortText = "payment failed"

    @field_validator("amount_due")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @field_validator("failed_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a timezone (e.g. 2026-11-24T09:00:00+08:00)")
        return value


class StartCollections(Strict):
    """Input of CollectionsWorkflow (the first failure; later ones arrive as signals)."""

    failure: BillingFailure
    policy: CollectionsPolicy
    case_policy: CasePolicy = Field(default_factory=CasePolicy)


class PaymentReceived(Strict):
    payment_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    invoice_id: InvoiceId
    amount: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = CURRENCY
    received_at: datetime
    by: Actor = "billing-system"

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value


class OpenDispute(Strict):
    """The customer disputes the invoice: link an existing case, or open one."""

    case_id: CaseId | None = None  # an existing case; None opens a new one
    description: LongText
    disputed_amount: Money | None = None  # default: the whole balance
    by: Actor


class DisputeOutcome(Strict):
    """Sent by the linked BillingCaseWorkflow when its customer has been told the resolution."""

    case_id: str
    outcome: Outcome | None  # None: the case was withdrawn
    credit_amount: Decimal | None = None


class ReportFraud(Strict):
    reason: LongText
    by: Actor


class PromiseToPay(Strict):
    until: datetime
    by: Actor


class Waive(Strict):
    reason: LongText
    by: Actor


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
    paid: Decimal
    credited: Decimal
    balance: Decimal
    first_failed_at: datetime
    failures: list[str]  # failure ids seen
    next_step: str | None = None
    next_step_at: datetime | None = None
    suspended_subscriptions: list[str] = Field(default_factory=list)
    suspended_at: datetime | None = None
    data_deletion_at: datetime | None = None
    fraud: bool = False
    linked_case_id: str | None = None
    promised_until: datetime | None = None
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


# --------------------------------------------------------------------------- payable to 21Vianet


def _above_zero(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


PositiveMoney = Annotated[Money, AfterValidator(_above_zero)]
VianetInvoiceNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
]


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
    paid_at: AwareDatetime
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


EmailMessage.model_rebuild()
