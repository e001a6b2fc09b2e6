"""A billing case: its policy, what opens it, the agents' actions, what it shows and stores."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from core.calendar import BusinessCalendar
from core.models.case_policy import CasePolicy, Priority, Severity
from core.models.fapiao import FapiaoTask, RecordedFapiao
from core.models.shared import (
    CURRENCY,
    Actor,
    Attention,
    CaseEvent,
    CaseId,
    Currency,
    Customer,
    Guid,
    InvoiceId,
    Locale,
    LogState,
    LongText,
    Money,
    Strict,
)

TicketNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{3,39}$")
]


class Category(StrEnum):
    INVOICE_DISPUTE = "invoice-dispute"
    UNEXPECTED_CHARGE = "unexpected-charge"
    REFUND_REQUEST = "refund-request"
    PAYMENT = "payment"
    CREDIT_NOTE = "credit-note"
    SUBSCRIPTION_CHANGE = "subscription-change"
    BILLING_QUESTION = "billing-question"
    FRAUD_CONCERN = "fraud-concern"
    FAPIAO = "fapiao"  # issue, reissue (corrected buyer details) or reverse a fapiao in red


class CaseStatus(StrEnum):
    OPEN = "open"
    WAITING_ON_CUSTOMER = "waiting-on-customer"
    ESCALATION_PENDING = "escalation-pending"  # the agent must file the request in the portal
    WAITING_ON_VIANET = "waiting-on-21vianet"
    # finance issues the fapiao the case asked for (or the red-letter one a credit needs)
    WAITING_ON_FINANCE = "waiting-on-finance"
    # the buyer confirms the red-letter information (红字发票信息确认单) in the tax system
    WAITING_ON_BUYER = "waiting-on-buyer-confirmation"
    RESOLVING = "resolving"  # resolution decided, resolution email on its way
    RESOLVED = "resolved"  # customer told; reopen window running
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"
    MERGED = "merged"  # a duplicate: its request continues under the case it merged into

    @property
    def is_final(self) -> bool:
        return self in (CaseStatus.CLOSED, CaseStatus.WITHDRAWN, CaseStatus.MERGED)


# Every case starts in it (BillingCaseWorkflow's first state; what opening one answers).
FIRST_STATUS = CaseStatus.OPEN

# States in which the agent still works the case.
WORKING_STATUSES = frozenset(
    {
        CaseStatus.OPEN,
        CaseStatus.WAITING_ON_CUSTOMER,
        CaseStatus.ESCALATION_PENDING,
        CaseStatus.WAITING_ON_VIANET,
    }
)


# a fapiao task open: finance, or the buyer in the tax system, must act before the case goes on
# (the customer may still write: their reply is recorded and the owner told)
FAPIAO_WAITS = frozenset({CaseStatus.WAITING_ON_FINANCE, CaseStatus.WAITING_ON_BUYER})
# States in which a case may be merged, as a duplicate, into another: still with the agent (one
# escalated to 21Vianet or resolved carries work of its own: merge the other one into it).
MERGEABLE_STATUSES = frozenset({CaseStatus.OPEN, CaseStatus.WAITING_ON_CUSTOMER})


class Outcome(StrEnum):
    CREDIT_ISSUED = "credit-issued"
    REFUND_ISSUED = "refund-issued"
    INVOICE_CORRECTED = "invoice-corrected"
    CHARGE_UPHELD = "charge-upheld"
    EXPLAINED = "explained"

    @property
    def needs_amount(self) -> bool:
        return self in (Outcome.CREDIT_ISSUED, Outcome.REFUND_ISSUED)


# --------------------------------------------------------------------------- intake


class CaseDetails(Strict):
    """What the agent (or an intake) knows when the case opens."""

    customer: Customer
    subscription_id: Guid | None = None
    invoice_id: InvoiceId | None = None
    category: Category
    disputed_amount: Money = Decimal("0.00")
    currency: Currency = CURRENCY
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
    # a run continued as new carries the state of the one before
    carried: CaseState | None = None


class CaseOpened(Strict):
    """What opening a case answers, without asking the workflow (no query): its ids and its
    first status."""

    case_id: CaseId
    workflow_id: str
    status: CaseStatus = FIRST_STATUS


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
    # the bill's blue fapiao this credit reverses, and the red-letter fapiao that did: the
    # customer is told of the credit only once it is recorded
    fapiao_to_reverse: list[str] = Field(default_factory=list)
    red_fapiao_number: str | None = None


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
    fapiao_task: FapiaoTask | None = None
    fapiao: list[RecordedFapiao] = Field(default_factory=list)
    merged_into: str | None = None  # a duplicate: the case its request continues under
    merged_cases: list[str] = Field(default_factory=list)  # the duplicates merged into it
    # set while a step failed or a wait ran out: what a person must do
    needs_attention: str | None = None
    attention: Attention | None = None  # why a person must act, if one must
    # every event is in the database; the view has the last ones (long texts cut)
    event_count: int = 0
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
    # the fapiao task finance has open on the case (the fapiao tasks page lists these)
    fapiao_task: str | None = None
    fapiao_task_data: dict[str, str] | None = None
    merged_into: str | None = None


class SlaClockState(BaseModel):
    """An SLA clock's bookkeeping (the workflow's SlaClock adds what it does with it)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    target: timedelta
    reminder_at: float
    elapsed: timedelta = timedelta(0)
    running_since: datetime | None = None
    met_at: datetime | None = None
    reminded: bool = False
    breached: bool = False
    # set: the target counts opening hours only (SlaTargets.business_hours)
    calendar: BusinessCalendar | None = None


class CaseState(BaseModel):
    """A case, whole: the one state its rules (workflows/billing_case/rules.py) change and what a
    run carries into the next (continue-as-new). Mutable: each transition changes it in place."""

    model_config = ConfigDict(extra="forbid")

    case_id: CaseId
    opened_by: str
    policy: CasePolicy
    details: CaseDetails
    status: CaseStatus = FIRST_STATUS
    owner: str | None = None
    opened_at: datetime
    closed_at: datetime | None = None
    first_response_sla: SlaClockState
    resolution_sla: SlaClockState
    waiting_since: datetime | None = None  # the information request the customer owes
    last_question: str | None = None
    customer_reminders: int = 0
    customer_silence_reported: bool = False
    escalations: list[EscalationView] = Field(default_factory=list)
    ticket_reminders: int = 0
    vianet_follow_ups: int = 0
    # the reminders of the current wait ran out and a manager was told: none until it changes
    gave_up: bool = False
    resolution: ResolutionView | None = None
    accepted_at: datetime | None = None  # the resolution accepted, its delivery not known yet
    reopen_count: int = 0
    fapiao_task: FapiaoTask | None = None
    fapiao: list[RecordedFapiao] = Field(default_factory=list)
    # a duplicate merged into another case (status merged); the duplicates merged into this one
    merged_into: str | None = None
    merged_cases: list[str] = Field(default_factory=list)
    collections_workflow_id: str | None = None
    # the collections told of the current resolution's outcome (or of the withdrawal)
    reported_to: list[str] = Field(default_factory=list)
    # the shell's event log, set when a run continues as new
    log: LogState | None = None


OpenCase.model_rebuild()
