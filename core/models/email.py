"""Emails: which there are, whom each goes to, what each is about, and the data each needs beyond
its case, invoice or 21Vianet invoice: one small typed model per email, built when a workflow
queues the email, so a missing or wrong field fails there (and in a test), never in an activity.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import EmailStr, Field, StringConstraints, model_validator

from core import ids
from core.models.letters import PaymentFailure, payment_failure
from core.models.shared import Locale, Strict

if TYPE_CHECKING:
    from core.models.account import AccountView
    from core.models.case import CaseView
    from core.models.collections import CollectionsView
    from core.models.vianet_invoice import VianetInvoiceView


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
    # any workflow, to a manager: a step failed, or something waits for a person
    MANAGER_NEEDS_ATTENTION = "manager_needs_attention"

    @property
    def data(self) -> type[EmailData]:
        """The model of this email's data."""
        return EMAIL_DATA[self]

    @property
    def to_customer(self) -> bool:
        return self.data.recipient is Recipient.CUSTOMER

    @property
    def about(self) -> About | None:
        """The view it is rendered with; None: whichever one the sending workflow has."""
        return self.data.about


class Recipient(StrEnum):
    """Who an email goes to; the workflow turns it into an address when it queues the email."""

    CUSTOMER = "customer"
    OWNER = "owner"  # the case's agent, or the team while nobody owns it
    MANAGER = "manager"
    FINANCE = "finance"  # the partner's own finance team


class About(StrEnum):
    """The view an email is rendered with (and the name it has in the template)."""

    CASE = "case"
    COLLECTIONS = "collections"
    VIANET_INVOICE = "vianet_invoice"
    ACCOUNT = "account"


class EmailData(Strict):
    """What one email needs beyond its view. Each subclass is one email (its ``template``)."""

    recipient: ClassVar[Recipient]
    about: ClassVar[About | None]
    # fields an older workflow still passes to an email scheduled before they were dropped
    retired: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, value: Any) -> Any:
        if isinstance(value, dict) and cls.retired.intersection(value):
            value = cls.upgrade({k: v for k, v in value.items()})
        return value

    @classmethod
    def upgrade(cls, old: dict[str, Any]) -> dict[str, Any]:
        """An older payload as this email reads it now: its retired fields dropped."""
        return {name: value for name, value in old.items() if name not in cls.retired}

    def extra(self) -> dict[str, str]:
        """The fields as the templates read them (``extra.<name>``): text, ISO 8601 moments."""
        values = self.model_dump(exclude={"template", "also"}, exclude_none=True)
        return {
            name: value.isoformat() if isinstance(value, datetime) else str(value)
            for name, value in values.items()
            if not isinstance(value, list)
        }

    def lists(self) -> dict[str, list[str]]:
        """The fields that are lists of text (a letter's subscriptions), as the templates read
        them (``extra.<name>``, beside the text ones)."""
        values = self.model_dump(exclude={"template", "also"})
        return {
            name: [str(item) for item in value]
            for name, value in values.items()
            if isinstance(value, list)
        }


Text = Annotated[str, StringConstraints(max_length=100_000)]


class _ToCustomerOnCase(EmailData):
    recipient = Recipient.CUSTOMER
    about = About.CASE


class _ToOwnerOnCase(EmailData):
    recipient = Recipient.OWNER
    about = About.CASE


class _ToCustomerOnInvoice(EmailData):
    recipient = Recipient.CUSTOMER
    about = About.COLLECTIONS


class OtherInvoice(Strict):
    """Another overdue invoice of the same customer, listed in one consolidated notice."""

    invoice_id: str
    balance: Decimal
    currency: str
    suspension_date: datetime | None = None  # a final notice names each invoice's date


class _Consolidated(_ToCustomerOnInvoice):
    """A policy notice the customer's account may send for several invoices at once: the one
    the email is about, and `also` the others of the same kind (AccountWorkflow)."""

    also: list[OtherInvoice] = Field(default_factory=list, max_length=200)


class _ToManagerOnInvoice(EmailData):
    recipient = Recipient.MANAGER
    about = About.COLLECTIONS


# --------------------------------------------------------------------------- about a case


class CaseAcknowledged(_ToCustomerOnCase):
    template: Literal[EmailTemplate.CASE_ACKNOWLEDGED] = EmailTemplate.CASE_ACKNOWLEDGED


class InfoRequested(_ToCustomerOnCase):
    template: Literal[EmailTemplate.INFO_REQUESTED] = EmailTemplate.INFO_REQUESTED
    question: Text


class CustomerReminder(_ToCustomerOnCase):
    """Quotes the last question (an email queued before it was carried: from the timeline)."""

    template: Literal[EmailTemplate.CUSTOMER_REMINDER] = EmailTemplate.CUSTOMER_REMINDER
    question: Text | None = None


class CaseEscalated(_ToCustomerOnCase):
    template: Literal[EmailTemplate.CASE_ESCALATED] = EmailTemplate.CASE_ESCALATED


class CaseResolved(_ToCustomerOnCase):
    template: Literal[EmailTemplate.CASE_RESOLVED] = EmailTemplate.CASE_RESOLVED
    reopen_days: int = Field(ge=0)


class CaseReopened(_ToCustomerOnCase):
    template: Literal[EmailTemplate.CASE_REOPENED] = EmailTemplate.CASE_REOPENED
    reason: Text


class CaseClosed(_ToCustomerOnCase):
    template: Literal[EmailTemplate.CASE_CLOSED] = EmailTemplate.CASE_CLOSED


class CaseWithdrawn(_ToCustomerOnCase):
    """Why it was withdrawn is the agent's note: on the timeline, not in the letter."""

    template: Literal[EmailTemplate.CASE_WITHDRAWN] = EmailTemplate.CASE_WITHDRAWN
    retired = frozenset({"reason"})


class OwnerNewCase(_ToOwnerOnCase):
    template: Literal[EmailTemplate.OWNER_NEW_CASE] = EmailTemplate.OWNER_NEW_CASE


class OwnerSlaReminder(_ToOwnerOnCase):
    template: Literal[EmailTemplate.OWNER_SLA_REMINDER] = EmailTemplate.OWNER_SLA_REMINDER
    clock: str
    due_at: datetime


class ManagerSlaBreach(EmailData):
    recipient = Recipient.MANAGER
    about = About.CASE
    template: Literal[EmailTemplate.MANAGER_SLA_BREACH] = EmailTemplate.MANAGER_SLA_BREACH
    clock: str
    due_at: datetime


class OwnerFileEscalation(_ToOwnerOnCase):
    template: Literal[EmailTemplate.OWNER_FILE_ESCALATION] = EmailTemplate.OWNER_FILE_ESCALATION
    request_title: Text
    request_body: Text


class OwnerEscalationReminder(_ToOwnerOnCase):
    """Either the request still to file (title and body) or the ticket to follow up."""

    template: Literal[EmailTemplate.OWNER_ESCALATION_REMINDER] = (
        EmailTemplate.OWNER_ESCALATION_REMINDER
    )
    request_title: Text | None = None
    request_body: Text | None = None
    ticket_number: str | None = None
    follow_up: int | None = Field(default=None, ge=1)


class OwnerCustomerSilent(_ToOwnerOnCase):
    """Quotes the last question (an email queued before it was carried: from the timeline)."""

    template: Literal[EmailTemplate.OWNER_CUSTOMER_SILENT] = EmailTemplate.OWNER_CUSTOMER_SILENT
    question: Text | None = None


class OwnerEmailBounced(_ToOwnerOnCase):
    template: Literal[EmailTemplate.OWNER_EMAIL_BOUNCED] = EmailTemplate.OWNER_EMAIL_BOUNCED
    bounced_address: str
    bounced_template: EmailTemplate
    error: Text


class OwnerCaseUpdate(_ToOwnerOnCase):
    template: Literal[EmailTemplate.OWNER_CASE_UPDATE] = EmailTemplate.OWNER_CASE_UPDATE
    text: Text


# --------------------------------------------------------------------------- about an invoice


class CollectionsPaymentFailed(_Consolidated):
    """The billing system's reason as a code (``payment_failure``): its words stay internal."""

    template: Literal[EmailTemplate.COLLECTIONS_PAYMENT_FAILED] = (
        EmailTemplate.COLLECTIONS_PAYMENT_FAILED
    )
    failure: PaymentFailure = PaymentFailure.UNKNOWN
    retired = frozenset({"reason"})

    @classmethod
    def upgrade(cls, old: dict[str, Any]) -> dict[str, Any]:
        reason = old.get("reason")
        new = super().upgrade(old)
        new.setdefault("failure", payment_failure(reason if isinstance(reason, str) else None))
        return new


class CollectionsReminder(_Consolidated):
    template: Literal[EmailTemplate.COLLECTIONS_REMINDER] = EmailTemplate.COLLECTIONS_REMINDER


class CollectionsFinalNotice(_Consolidated):
    template: Literal[EmailTemplate.COLLECTIONS_FINAL_NOTICE] = (
        EmailTemplate.COLLECTIONS_FINAL_NOTICE
    )
    suspension_date: datetime


class CollectionsSuspended(_ToCustomerOnInvoice):
    template: Literal[EmailTemplate.COLLECTIONS_SUSPENDED] = EmailTemplate.COLLECTIONS_SUSPENDED


class CollectionsDeletionWarning(_ToCustomerOnInvoice):
    template: Literal[EmailTemplate.COLLECTIONS_DELETION_WARNING] = (
        EmailTemplate.COLLECTIONS_DELETION_WARNING
    )
    days_left: int = Field(ge=0)


Subscriptions = Annotated[list[str], Field(max_length=200)]


class _AfterPayment(_ToCustomerOnInvoice):
    """What a payment left of the invoice's suspensions, as the customer's account (the only
    writer of subscriptions) found them once Partner Center answered; why stays internal."""

    amount: Decimal
    still_suspended: Subscriptions = Field(default_factory=list)
    # Partner Center has not reactivated these yet: a letter confirming them is queued
    reactivating: Subscriptions = Field(default_factory=list)


class CollectionsPaymentReceived(_AfterPayment):
    template: Literal[EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED] = (
        EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED
    )


class CollectionsReactivated(_AfterPayment):
    """Sent by the customer's account only, naming what Partner Center reactivated."""

    template: Literal[EmailTemplate.COLLECTIONS_REACTIVATED] = EmailTemplate.COLLECTIONS_REACTIVATED
    reactivated: Subscriptions = Field(default_factory=list)
    follow_up: bool = False  # confirms what an earlier letter said was still being reactivated


class CollectionsFraudSuspended(_ToCustomerOnInvoice):
    """The fraud signal that led to it is internal (``ManagerFraudReported``, the timeline)."""

    template: Literal[EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED] = (
        EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED
    )
    retired = frozenset({"reason"})


class CollectionsPromiseAccepted(_ToCustomerOnInvoice):
    template: Literal[EmailTemplate.COLLECTIONS_PROMISE_ACCEPTED] = (
        EmailTemplate.COLLECTIONS_PROMISE_ACCEPTED
    )


class CollectionsClosed(_ToCustomerOnInvoice):
    """Why nothing is owed is the invoice's status (credited, waived); the note stays internal."""

    template: Literal[EmailTemplate.COLLECTIONS_CLOSED] = EmailTemplate.COLLECTIONS_CLOSED
    retired = frozenset({"reason"})


class ManagerCollectionsHandOff(_ToManagerOnInvoice):
    template: Literal[EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF] = (
        EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF
    )


class ManagerPartnerCenterError(_ToManagerOnInvoice):
    template: Literal[EmailTemplate.MANAGER_PARTNER_CENTER_ERROR] = (
        EmailTemplate.MANAGER_PARTNER_CENTER_ERROR
    )
    subscription_id: str
    error: Text
    action: Literal["suspend", "reactivate"]


class ManagerFraudReported(_ToManagerOnInvoice):
    template: Literal[EmailTemplate.MANAGER_FRAUD_REPORTED] = EmailTemplate.MANAGER_FRAUD_REPORTED
    reason: Text
    by: str


# --------------------------------------------------------------------------- the payable


class FinanceVianetInvoiceDue(EmailData):
    recipient = Recipient.FINANCE
    about = About.VIANET_INVOICE
    template: Literal[EmailTemplate.FINANCE_VIANET_INVOICE_DUE] = (
        EmailTemplate.FINANCE_VIANET_INVOICE_DUE
    )
    days_left: int = Field(ge=0)


class ManagerVianetInvoiceOverdue(EmailData):
    recipient = Recipient.MANAGER
    about = About.VIANET_INVOICE
    template: Literal[EmailTemplate.MANAGER_VIANET_INVOICE_OVERDUE] = (
        EmailTemplate.MANAGER_VIANET_INVOICE_OVERDUE
    )
    days_overdue: int = Field(ge=0)


class ManagerNeedsAttention(EmailData):
    """About whichever workflow needs a person: a step that failed (with its error), or a wait
    that ran out (no error)."""

    recipient = Recipient.MANAGER
    about = None
    template: Literal[EmailTemplate.MANAGER_NEEDS_ATTENTION] = EmailTemplate.MANAGER_NEEDS_ATTENTION
    step: Text
    error: Text


AnyEmailData = Annotated[
    CaseAcknowledged
    | InfoRequested
    | CustomerReminder
    | CaseEscalated
    | CaseResolved
    | CaseReopened
    | CaseClosed
    | CaseWithdrawn
    | OwnerNewCase
    | OwnerSlaReminder
    | ManagerSlaBreach
    | OwnerFileEscalation
    | OwnerEscalationReminder
    | OwnerCustomerSilent
    | OwnerEmailBounced
    | OwnerCaseUpdate
    | CollectionsPaymentFailed
    | CollectionsReminder
    | CollectionsFinalNotice
    | CollectionsSuspended
    | CollectionsDeletionWarning
    | CollectionsPaymentReceived
    | CollectionsReactivated
    | CollectionsFraudSuspended
    | CollectionsPromiseAccepted
    | CollectionsClosed
    | ManagerCollectionsHandOff
    | ManagerPartnerCenterError
    | ManagerFraudReported
    | FinanceVianetInvoiceDue
    | ManagerVianetInvoiceOverdue
    | ManagerNeedsAttention,
    Field(discriminator="template"),
]


def _by_template() -> dict[EmailTemplate, type[EmailData]]:
    found: dict[EmailTemplate, type[EmailData]] = {}
    pending = list(EmailData.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if "template" in cls.model_fields:
            found[cls.model_fields["template"].default] = cls
    return found


EMAIL_DATA: dict[EmailTemplate, type[EmailData]] = _by_template()
# the emails a collections policy step may send: what the workflow can fill in from its state
STEP_EMAILS = frozenset(
    {
        EmailTemplate.COLLECTIONS_PAYMENT_FAILED,
        EmailTemplate.COLLECTIONS_REMINDER,
        EmailTemplate.COLLECTIONS_FINAL_NOTICE,
        EmailTemplate.COLLECTIONS_SUSPENDED,
        EmailTemplate.COLLECTIONS_DELETION_WARNING,
        EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF,
    }
)


class EmailMessage(Strict):
    """One email, sent at most once per ``key``: its data and the view it is about."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    to: EmailStr
    locale: Locale
    data: AnyEmailData
    case: CaseView | None = None
    collections: CollectionsView | None = None
    vianet_invoice: VianetInvoiceView | None = None
    account: AccountView | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_extra(cls, value: Any) -> Any:
        """An activity scheduled before the data was typed carried ``template`` and ``extra``."""
        if isinstance(value, dict) and "template" in value and "data" not in value:
            value = dict(value)
            template = EmailTemplate(value.pop("template"))
            extra = value.pop("extra", None) or {}
            fields = template.data.model_fields.keys() | template.data.retired
            known = {name: text for name, text in extra.items() if name in fields}
            value["data"] = {"template": template, **known}
        return value

    @model_validator(mode="after")
    def _one_subject(self) -> EmailMessage:
        about = {
            About.CASE: self.case,
            About.COLLECTIONS: self.collections,
            About.VIANET_INVOICE: self.vianet_invoice,
            About.ACCOUNT: self.account,
        }
        given = [name for name, view in about.items() if view is not None]
        wanted = self.data.about
        if len(given) != 1 or (wanted is not None and given != [wanted]):
            one = wanted.value if wanted else "case, collections, 21Vianet invoice or account"
            raise ValueError(
                f"email {self.template.value} is about one {one}, "
                f"given {', '.join(given) or 'nothing'}"
            )
        return self

    @property
    def template(self) -> EmailTemplate:
        return EmailTemplate(self.data.template)

    @property
    def subject_id(self) -> str:
        """The case id, the invoice id for collections, the 21Vianet invoice number: what the
        email log files it under."""
        if self.case is not None:
            return self.case.case_id
        if self.vianet_invoice is not None:
            return self.vianet_invoice.invoice_number
        if self.account is not None:
            return self.account.tenant_id
        assert self.collections is not None
        return self.collections.invoice_id

    @property
    def workflow_id(self) -> str:
        """The workflow whose email this is: its thread, and where its delivery events go."""
        if self.case is not None:
            return ids.case_workflow_id(self.case.case_id)
        if self.vianet_invoice is not None:
            return ids.vianet_invoice_workflow_id(self.vianet_invoice.invoice_number)
        if self.account is not None:
            return ids.account_workflow_id(self.account.tenant_id)
        assert self.collections is not None
        return ids.collections_workflow_id(self.collections.invoice_id)


class EmailUndelivered(Strict):
    """SendGrid's Event Webhook: an email it had accepted bounced, or was dropped or blocked."""

    key: Annotated[str, StringConstraints(max_length=255)]
    event: Literal["bounce", "dropped", "blocked"]
    address: Annotated[str, StringConstraints(max_length=320)]
    template: Annotated[str, StringConstraints(max_length=64)]
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class EmailDelivered(Strict):
    """SendGrid's Event Webhook: an email it had accepted reached the customer's mail server."""

    key: Annotated[str, StringConstraints(max_length=255)]
    template: Annotated[str, StringConstraints(max_length=64)]


class EmailSent(Strict):
    key: str
    provider_message_id: str
    duplicate: bool = False  # True when the key had already been sent: nothing went out again
