"""Bodies of the HTTP intake that are not shared payloads: its answers."""

from __future__ import annotations

from decimal import Decimal

from core.models import CollectionsStatus, Strict
from service.collections import Started


class FailureAccepted(Strict):
    result: Started
    workflow_id: str


class PaymentRecorded(Strict):
    invoice_id: str
    workflow_id: str
    status: CollectionsStatus
    currency: str
    amount_due: Decimal
    paid: Decimal
    credited: Decimal
    balance: Decimal


class CaseOpened(Strict):
    case_id: str
    workflow_id: str
    status: str


class Problem(Strict):
    detail: str


class InboundReceived(Strict):
    outcome: str  # what the email did: replied, confirmed, reopened, new-case, auto-reply, ...
    workflow_id: str | None = None
    duplicate: bool = False  # posted before: it acted then, not again


class EventsAnswer(Strict):
    recorded: int  # new events
    duplicates: int  # posted before: not recorded again
    ignored: int  # not ours, or of a kind we do not keep (open, click, ...)
