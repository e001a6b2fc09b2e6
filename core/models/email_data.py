"""What every email is: its template, its recipient, what it is about, and the base of the data
each needs beyond its case, invoice or 21Vianet invoice (core/models/email.py has one model per
email, core/models/messages.py the message an activity sends)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints, model_validator

from core.models.shared import Locale, Strict


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
    CASE_REPLY = "case_reply"  # an agent's own words, in the thread's letterhead
    # the buyer confirms red-letter information in the tax system (and is reminded to)
    FAPIAO_CONFIRM_RED_LETTER = "fapiao_confirm_red_letter"
    CASE_MERGED = "case_merged"  # a duplicate: the request continues under another case
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
    # the customer's credit balance (their account), to the customer
    CREDIT_RECEIVED = "credit_received"
    CREDIT_APPLIED = "credit_applied"
    CREDIT_REFUNDED = "credit_refunded"
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

    def language(self) -> Locale | None:
        """The language this email is written in when it is not its recipient's."""
        return None

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


# each email's model by its template: core/models/email.py fills it in as it defines them
EMAIL_DATA: dict[EmailTemplate, type[EmailData]] = {}
