"""What people ask of a case: the portal's request, the workspace's form, the agents' and
customers' actions (each an update's input)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import EmailStr, Field, model_validator

from core.models.case import (
    CaseDetails,
    CaseStatus,
    Category,
    OpenCase,
    Outcome,
    TicketNumber,
)
from core.models.case_policy import CasePolicy, Priority, Severity
from core.models.fapiao import FapiaoNumber
from core.models.shared import (
    CURRENCY,
    Actor,
    AttachedFile,
    CaseId,
    CompanyName,
    Currency,
    Customer,
    Guid,
    InvoiceId,
    Locale,
    LongText,
    Money,
    ShortText,
    Strict,
)

# files on one reply: what a customer's mail server takes in one email stays well inside this
MAX_REPLY_FILES = 10


class CaseRequest(Strict):
    """A case as the customer portal asks for it, flat (`POST /v1/cases`): who opened it is the
    caller that signed the request, never a field; `owner` is who it is assigned to."""

    tenant_id: Guid
    name: CompanyName
    email: EmailStr
    category: Category
    description: LongText
    locale: Locale = Locale.ZH_CN
    subscription_id: Guid | None = None
    invoice_id: InvoiceId | None = None
    amount: Money = Decimal("0.00")
    currency: Currency = CURRENCY
    priority: Priority = Priority.NORMAL
    owner: EmailStr | None = None

    def opened_by_caller(self, caller: str) -> CaseForm:
        return CaseForm.model_validate({**self.model_dump(), "opened_by": caller})


class CaseForm(CaseRequest):
    """A case as a person fills it in, flat (the CLI's `open`, the workspace), or a caller's
    request with the caller as the one who opened it."""

    opened_by: Actor

    def open_case(self, case_id: str, policy: CasePolicy) -> OpenCase:
        # the case id is never the caller's: a retried request is known by its idempotency key
        """The workflow's input: every field here is already valid there."""
        customer = Customer(
            tenant_id=self.tenant_id, name=self.name, email=self.email, locale=self.locale
        )
        details = CaseDetails(
            customer=customer,
            subscription_id=self.subscription_id,
            invoice_id=self.invoice_id,
            category=self.category,
            disputed_amount=self.amount,
            currency=self.currency,
            description=self.description,
            priority=self.priority,
        )
        return OpenCase(
            case_id=case_id,
            details=details,
            owner=self.owner,
            opened_by=self.opened_by,
            policy=policy,
        )


# --------------------------------------------------------------------------- updates


class Assign(Strict):
    agent: EmailStr
    by: Actor


class AddNote(Strict):
    text: LongText
    by: Actor


class Reply(Strict):
    """An agent's public reply: emailed to the customer as the thread's next email, in the
    customer's language unless the agent wrote in the other (`locale`); the subject is "Re: " and
    the thread's by default, and keeps the case number whatever the agent types."""

    text: LongText
    subject: ShortText | None = None
    locale: Locale | None = None
    attachments: list[AttachedFile] = Field(default_factory=list, max_length=MAX_REPLY_FILES)
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
    # the bill's blue fapiao a credit must reverse in red before the customer hears of it: the
    # service fills it from the fapiao recorded for the case's bill (never the person)
    blue_fapiao: list[FapiaoNumber] = Field(default_factory=list, max_length=20)

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


class MergeCase(Strict):
    """A person merges this case, a duplicate, into `into` (the service's `merge`)."""

    into: CaseId
    by: Actor


class Merge(MergeCase):
    """The duplicate's update: what the service read of the target goes with it, so that the
    case's rules alone decide (a closed target, another customer's)."""

    into_tenant_id: Guid
    into_status: CaseStatus


class MergedIn(Strict):
    """The target's update: duplicate `case_id` was merged into it (once, however often sent)."""

    case_id: CaseId
    by: Actor


class LinkCase(Strict):
    """Link this case and `other` as related, both ways (no letter); `UnlinkCase` undoes it."""

    other: CaseId
    by: Actor


class UnlinkCase(LinkCase):
    pass


# --------------------------------------------------------------------------- view
