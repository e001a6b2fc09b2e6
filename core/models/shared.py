"""The constrained types every domain shares, each defined once: money, ids, text, time, the
customer and the timeline event.

This package imports only pydantic and the standard library, so workflow code loads it cheaply.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)

CURRENCY = "CNY"
GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# an invoice, case or 21Vianet invoice number: what a workflow id and a database key can hold
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# the billing system's own ids of failures and payments
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
MONEY_MAX = Decimal("999999999999.99")  # what the database's Numeric(14, 2) holds
# C0 controls but tab and newline, DEL, C1 controls, bidi embeddings, overrides and isolates (a
# "\u202e" turns "exe.pdf" into "fdp.exe"), lone surrogates (no UTF-8 has them: PostgreSQL and
# Temporal refuse them later)
_REFUSED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAK = re.compile(r"[\n\r\u2028\u2029]")
_NAMES = {
    "\x00": "NUL",
    "\x0b": "a vertical tab",
    "\x0c": "a form feed",
    "\x1b": "ESC",
    "\x7f": "DEL",
}


def _describe(char: str) -> str:
    if char in _NAMES:
        return _NAMES[char]
    if "\ud800" <= char <= "\udfff":
        return "a lone surrogate"
    if "\u202a" <= char <= "\u202e" or "\u2066" <= char <= "\u2069":
        return f"the bidirectional control U+{ord(char):04X}"
    return f"the control character U+{ord(char):04X}"


def clean_text(
    value: str, *, max_chars: int, max_bytes: int, multiline: bool, strip: bool = True
) -> str:
    """What every free text goes through at every edge: NFC, line breaks as \\n, no control
    characters but tab and newline, no bidi overrides or isolates, bounded in characters and in
    UTF-8 bytes (what a column, a payload or an email header holds)."""
    refused = _REFUSED.search(value.replace("\r\n", "\n").replace("\r", "\n"))
    if refused:
        raise ValueError(f"must not contain {_describe(refused.group())}")
    text = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    if strip:
        text = text.strip()
    if not multiline and _LINE_BREAK.search(text):
        raise ValueError("must be one line")
    if len(text) > max_chars:
        raise ValueError(f"must be at most {max_chars:,} characters (it has {len(text):,})")
    if len(text.encode("utf-8")) > max_bytes:
        raise ValueError(f"must be at most {max_bytes:,} bytes in UTF-8")
    return text


def free_text(*, max_chars: int, max_bytes: int, multiline: bool, min_chars: int = 1) -> object:
    """The validator of a free-text field, for `Annotated[str, ...]`."""

    def check(value: str) -> str:
        text = clean_text(value, max_chars=max_chars, max_bytes=max_bytes, multiline=multiline)
        if len(text) < min_chars:
            raise ValueError("must not be empty")
        return text

    return AfterValidator(check)


def _two_places(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite amount")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("must have at most two decimal places (fen)")
    return value.quantize(Decimal("0.01"))


def _above_zero(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a timezone (e.g. 2026-11-24T09:00:00+08:00)")
    return value


# Money is Decimal, never float: at most 2 places, at most 12 digits before the point.
Money = Annotated[Decimal, Field(ge=Decimal("0"), le=MONEY_MAX), AfterValidator(_two_places)]
PositiveMoney = Annotated[Money, AfterValidator(_above_zero)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN, to_lower=True)]
InvoiceId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
CaseId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
ExternalId = Annotated[str, StringConstraints(pattern=EXTERNAL_ID_PATTERN)]
# free text, one type a size: the caps fit the columns (characters) and keep payloads small (bytes)
Actor = Annotated[str, free_text(max_chars=200, max_bytes=800, multiline=False)]
ShortText = Annotated[str, free_text(max_chars=500, max_bytes=2_000, multiline=False)]
CompanyName = ShortText
# 20,000 Chinese characters are 60,000 bytes
LongText = Annotated[str, free_text(max_chars=20_000, max_bytes=64 * 1024, multiline=True)]
# a moment someone else gives us: without its offset it could be any of 24 hours
AwareTime = Annotated[datetime, AfterValidator(_aware)]


class Strict(BaseModel):
    """Base for every payload: unknown fields are an error, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Locale(StrEnum):
    ZH_CN = "zh-CN"
    EN_US = "en-US"


class Customer(Strict):
    tenant_id: Guid
    name: CompanyName
    email: EmailStr
    locale: Locale = Locale.ZH_CN


class EventKind(StrEnum):
    OPENED = "opened"
    ASSIGNED = "assigned"
    NOTE = "note"
    INFO_REQUESTED = "info-requested"
    CUSTOMER_REPLIED = "customer-replied"
    REPLIED = "replied"  # an agent's public reply, emailed to the customer (a note is internal)
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
    MERGED = "merged"  # this case, a duplicate, merged into another (data: into)
    MERGED_IN = "merged-in"  # a duplicate merged into this case (data: case)
    CASE_LINKED = "case-linked"  # related to another case, both ways (data: case)
    CASE_UNLINKED = "case-unlinked"
    SLA_REMINDER = "sla-reminder"
    SLA_BREACHED = "sla-breached"
    EMAIL_SENT = "email-sent"
    EMAIL_BOUNCED = "email-bounced"
    REMINDER = "reminder"
    FAPIAO_REQUESTED = "fapiao-requested"
    FAPIAO_BUYER_CONFIRMS = "fapiao-buyer-confirms"
    FAPIAO_BUYER_REMINDED = "fapiao-buyer-reminded"
    FAPIAO_RECORDED = "fapiao-recorded"
    # collections
    BILLING_FAILED = "billing-failed"
    POLICY_STEP = "policy-step"
    PAYMENT_RECEIVED = "payment-received"
    # paid beyond the balance: the rest is the customer's credit (finance applies or refunds it)
    CREDIT_KEPT = "credit-kept"
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
    SUSPENSION_ASKED = "suspension-asked"  # a manager must approve the suspension
    SUSPENSION_APPROVED = "suspension-approved"
    SUSPENSION_REFUSED = "suspension-refused"
    NOTICE_DELIVERED = "notice-delivered"
    CONTACT_CORRECTED = "contact-corrected"
    # a customer's account: holds on its subscriptions, and how its policy differs
    HOLD_PLACED = "hold-placed"
    HOLD_RELEASED = "hold-released"
    FRAUD_LIFTED = "fraud-lifted"
    POLICY_OVERRIDDEN = "policy-overridden"
    # the customer's credit balance (their account); CREDIT_KEPT above is an overpayment's
    CREDIT_RECEIVED = "credit-received"  # a payment after its invoice ended: cash, all credit
    CREDIT_APPLIED = "credit-applied"  # to an invoice (on the invoice: what it took)
    CREDIT_RETURNED = "credit-returned"  # what an invoice could not take
    REFUND_REQUESTED = "refund-requested"
    REFUND_APPROVED = "refund-approved"
    REFUND_REFUSED = "refund-refused"
    REFUNDED = "refunded"
    # the partner's own invoices from 21Vianet
    VIANET_INVOICE_RECORDED = "21vianet-invoice-recorded"
    VIANET_INVOICE_OVERDUE = "21vianet-invoice-overdue"
    VIANET_INVOICE_PAID = "21vianet-invoice-paid"
    # a step that failed, and what an operator decided; a manager asked to look
    STEP_FAILED = "step-failed"
    STEP_RETRIED = "step-retried"
    STEP_SKIPPED = "step-skipped"
    NEEDS_ATTENTION = "needs-attention"
    ATTENTION_HANDLED = "attention-handled"  # a person saw to what a flag asked
    DISPUTE_REFUSED = "dispute-refused"
    SIGNAL_REFUSED = "signal-refused"  # sent by a client without the encryption key


class AttachedFile(Strict):
    """A file in the attachment store (intake/attachments.py), by reference: workflows and
    activities carry its digest and name, never its bytes."""

    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    name: Annotated[str, free_text(max_chars=100, max_bytes=400, multiline=False)]
    content_type: Annotated[str, StringConstraints(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")]
    size: int = Field(ge=0)


class CaseEvent(Strict):
    """One line of a workflow's timeline (cases, collections and 21Vianet invoices alike)."""

    seq: int = Field(ge=1)
    at: datetime
    kind: EventKind
    actor: str
    text: str = ""
    data: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------- operators


class Attention(StrEnum):
    """Why a workflow waits for a person: the value of its NeedsAttention search attribute, what
    the workspace's 需要处理 queue and the manager's email say (each in the reader's language)."""

    FAILED_STEP = "failed-step"  # any workflow: a step failed; retry it or skip it
    STALLED = "stalled"  # any workflow: a wait ran out (and what older builds said of any flag)
    SUSPENSION_APPROVAL = "suspension-approval"  # an invoice's suspension waits for a manager
    REPLY_TRIAGE = "reply-triage"  # the customer answered a notice
    NOTICE_UNDELIVERED = "notice-undelivered"  # a notice bounced: correct or confirm the contact
    DISPUTE_REFUSED = "dispute-refused"  # a dispute's outcome could not be taken
    EXEMPT_SUSPENSION = "exempt-suspension"  # an account exempt from suspension was asked to
    TICKET_NOT_FILED = "ticket-not-filed"  # a case's 21Vianet request is still not filed
    VIANET_SILENT = "vianet-silent"  # 21Vianet does not answer a case's ticket
    PAYABLE_OVERDUE = "payable-overdue"  # a 21Vianet invoice is past its due date, unpaid


class RetryStep(Strict):
    """Run the step that failed again (after its cause was fixed)."""

    by: Actor


class SkipStep(Strict):
    """Give up the step that failed and go on without it."""

    reason: LongText
    by: Actor


class HandleAttention(Strict):
    """A person saw to what a workflow's flag asked (its reason), and says what they did."""

    note: LongText
    by: Actor


class StepAnswer(Strict):
    workflow_id: str
    step: str
    decision: str  # retry | skip | handled


# --------------------------------------------------------------------------- a run's carried log


class LogState(Strict):
    """What a workflow's event log carries into its next run (continue-as-new): the recent tail
    (every event is in the database), the counters its keys are made of, who must look."""

    tail: list[CaseEvent] = Field(default_factory=list)
    unsaved: list[CaseEvent] = Field(default_factory=list)  # the next run saves them
    last_seq: int = Field(ge=0)
    emails_sent: int = Field(ge=0)
    flagged: str | None = None
    flag_reason: Attention | None = None  # why it is flagged (None: a run of an older build)
    attention: str | None = None  # what the NeedsAttention search attribute says
    # the most recent action ids taken (workflows/sealed.py), and the newest one forgotten: an id
    # at or before it that is not kept was taken long ago
    actions: list[str] = Field(default_factory=list)
    actions_forgotten: str = ""
