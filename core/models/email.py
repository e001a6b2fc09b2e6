"""Emails: one small typed model per email, built when a workflow queues the email, so a missing
or wrong field fails there (and in a test), never in an activity."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field

from core.models.email_credit import CreditApplied, CreditReceived, CreditRefunded
from core.models.email_data import (
    EMAIL_DATA,
    About,
    EmailData,
    EmailTemplate,
    Recipient,
    Text,
    _Consolidated,
    _ToCustomerOnCase,
    _ToCustomerOnInvoice,
    _ToManagerOnInvoice,
    _ToOwnerOnCase,
)
from core.models.letters import PaymentFailure, payment_failure
from core.models.shared import AttachedFile, Attention, CaseId, Locale


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
    # the red-letter fapiao that reversed the bill's fapiao for the credit
    red_fapiao_number: str | None = None


class FapiaoConfirmRedLetter(_ToCustomerOnCase):
    """The buyer confirms, in the tax system, the red-letter information finance entered for its
    fapiao (`reminder` > 0: a reminder)."""

    template: Literal[EmailTemplate.FAPIAO_CONFIRM_RED_LETTER] = (
        EmailTemplate.FAPIAO_CONFIRM_RED_LETTER
    )
    blue_numbers: list[str] = Field(default_factory=list, max_length=20)
    reminder: int = Field(default=0, ge=0)


class CaseReopened(_ToCustomerOnCase):
    template: Literal[EmailTemplate.CASE_REOPENED] = EmailTemplate.CASE_REOPENED
    reason: Text


class CaseClosed(_ToCustomerOnCase):
    template: Literal[EmailTemplate.CASE_CLOSED] = EmailTemplate.CASE_CLOSED


class CaseWithdrawn(_ToCustomerOnCase):
    """Why it was withdrawn is the agent's note: on the timeline, not in the letter."""

    template: Literal[EmailTemplate.CASE_WITHDRAWN] = EmailTemplate.CASE_WITHDRAWN
    retired = frozenset({"reason"})


class CaseMerged(_ToCustomerOnCase):
    """The one letter of a merge: the request continues under case `into_case_id` (the
    duplicate's thread; the target sends nothing)."""

    template: Literal[EmailTemplate.CASE_MERGED] = EmailTemplate.CASE_MERGED
    into_case_id: CaseId


class CaseReply(_ToCustomerOnCase):
    """An agent's reply in their own words (escaped in the letter), its files by reference."""

    template: Literal[EmailTemplate.CASE_REPLY] = EmailTemplate.CASE_REPLY
    text: Text
    subject: Text | None = None
    locale: Locale | None = None
    attachments: list[AttachedFile] = Field(default_factory=list, max_length=20)

    def language(self) -> Locale | None:
        return self.locale

    def lists(self) -> dict[str, list[str]]:
        return {"attachments": [file.name for file in self.attachments]}


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
    # why, in a word each reader's language has (templates/email/*/_attention.txt); None: an
    # email queued by an older build (its step says it in English)
    reason: Attention | None = None


AnyEmailData = Annotated[
    CaseAcknowledged
    | InfoRequested
    | CustomerReminder
    | CaseEscalated
    | CaseResolved
    | CaseReopened
    | CaseClosed
    | CaseWithdrawn
    | CaseMerged
    | CaseReply
    | FapiaoConfirmRedLetter
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
    | CreditReceived
    | CreditApplied
    | CreditRefunded
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


EMAIL_DATA.update(_by_template())
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
