"""The letters about a customer's credit balance (the account's ledger): what moved, in one
currency, and what remains."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from core.models.email_data import About, EmailData, EmailTemplate, Recipient


class _ToCustomerOnAccount(EmailData):
    """About the customer's credit balance in one currency: what moved, and what remains."""

    recipient = Recipient.CUSTOMER
    about = About.ACCOUNT
    amount: Decimal
    currency: str
    remaining: Decimal


class CreditReceived(_ToCustomerOnAccount):
    """A payment for an invoice already settled (a second transfer, a payment after a credit)."""

    template: Literal[EmailTemplate.CREDIT_RECEIVED] = EmailTemplate.CREDIT_RECEIVED
    invoice_id: str


class CreditApplied(_ToCustomerOnAccount):
    template: Literal[EmailTemplate.CREDIT_APPLIED] = EmailTemplate.CREDIT_APPLIED
    invoice_id: str
    invoice_balance: Decimal  # what the invoice still owes after it


class CreditRefunded(_ToCustomerOnAccount):
    template: Literal[EmailTemplate.CREDIT_REFUNDED] = EmailTemplate.CREDIT_REFUNDED
