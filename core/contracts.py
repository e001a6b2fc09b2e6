"""The contracts between workflows and what they call: every activity a workflow runs and every
signal one workflow sends another, named once, here, with the type of its argument and of its
answer. A workflow calls `ACTIVITY.run(...)` or `SIGNAL.send(...)` (in `workflows/base.py`), an
activity is registered under `ACTIVITY.name`, a handler under `SIGNAL.name`; the type checker
sees a wrong argument, and `tests/test_contracts.py` proves the worker serves each name with the
types written here. No string name of an activity or a signal is written anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from core.models import (
    ChangeSubscription,
    CreditApplication,
    CreditKept,
    CreditSettled,
    DisputeOutcome,
    EmailDelivered,
    EmailMessage,
    EmailSent,
    EmailUndelivered,
    EscalationRequest,
    Notice,
    NoticeOutcome,
    PersistAccount,
    PersistCase,
    PersistCollections,
    PersistVianetInvoice,
    PlaceHolds,
    PrepareEscalation,
    RecordEscalation,
    ReleaseHolds,
    SubscriptionChanged,
)

A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True)
class ActivityContract(Generic[A, R]):
    """An activity: its registered name, the type it takes and the type it answers."""

    name: str
    arg: type[A]
    result: type[R]


@dataclass(frozen=True)
class SignalContract(Generic[A]):
    """A signal one workflow sends another: its handler's name and the type it takes."""

    name: str
    arg: type[A]


# activities
SEND_EMAIL = ActivityContract("send_email", EmailMessage, EmailSent)
CHANGE_SUBSCRIPTION = ActivityContract(
    "change_subscription", ChangeSubscription, SubscriptionChanged
)
PREPARE_ESCALATION = ActivityContract("prepare_escalation", PrepareEscalation, EscalationRequest)
RECORD_ESCALATION = ActivityContract("record_escalation", RecordEscalation, type(None))
PERSIST_CASE = ActivityContract("persist_case", PersistCase, type(None))
PERSIST_COLLECTIONS = ActivityContract("persist_collections", PersistCollections, type(None))
PERSIST_ACCOUNT = ActivityContract("persist_account", PersistAccount, type(None))
PERSIST_VIANET_INVOICE = ActivityContract(
    "persist_vianet_invoice", PersistVianetInvoice, type(None)
)

# signals between workflows: an invoice's collections to its customer's account and back, a
# case to the collections whose dispute it carries and back
PLACE_HOLDS = SignalContract("place_holds", PlaceHolds)
RELEASE_HOLDS = SignalContract("release_holds", ReleaseHolds)
NOTICE = SignalContract("notice", Notice)
NOTICE_OUTCOME = SignalContract("notice_outcome", NoticeOutcome)
DISPUTE_RESOLVED = SignalContract("dispute_resolved", DisputeOutcome)
LINK_COLLECTIONS = SignalContract("link_collections", str)
# SendGrid's event of a notice the account sent reaches the invoice it names first: passed on
EMAIL_DELIVERED = SignalContract("email_delivered", EmailDelivered)
EMAIL_UNDELIVERED = SignalContract("email_undelivered", EmailUndelivered)
# the customer's credit balance: an invoice's overpayment to the account, the account's credit
# to an invoice, and what the invoice took of it back
CREDIT_KEPT = SignalContract("credit_kept", CreditKept)
APPLY_CREDIT = SignalContract("apply_credit", CreditApplication)
CREDIT_SETTLED = SignalContract("credit_settled", CreditSettled)

ACTIVITIES: tuple[ActivityContract[Any, Any], ...] = (
    SEND_EMAIL,
    CHANGE_SUBSCRIPTION,
    PREPARE_ESCALATION,
    RECORD_ESCALATION,
    PERSIST_CASE,
    PERSIST_COLLECTIONS,
    PERSIST_ACCOUNT,
    PERSIST_VIANET_INVOICE,
)
SIGNALS: tuple[SignalContract[Any], ...] = (
    PLACE_HOLDS,
    RELEASE_HOLDS,
    NOTICE,
    NOTICE_OUTCOME,
    DISPUTE_RESOLVED,
    LINK_COLLECTIONS,
    EMAIL_DELIVERED,
    EMAIL_UNDELIVERED,
    CREDIT_KEPT,
    APPLY_CREDIT,
    CREDIT_SETTLED,
)
