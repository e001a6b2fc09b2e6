"""Every action the workspace offers, once: who may take it, its form, and the service call it
makes. A route serves all of a page's actions (`POST …/actions/{name}`) and the case, collections
and payables pages render each action's form from its fields, so a new action (a manager lifting
a fraud hold, approving a suspension) is one entry here.

The actor of every action is the signed-in person (`by`, `recorded_by`), never a form field."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from core.formatting import CHINA_STANDARD_TIME
from core.models import (
    AddNote,
    Assign,
    Confirm,
    CorrectContact,
    CustomerReply,
    Escalate,
    LiftFraud,
    Locale,
    MarkVianetPaid,
    OpenDispute,
    Outcome,
    PaymentReceived,
    PromiseToPay,
    RecordVianetInvoice,
    Reopen,
    ReportFraud,
    RequestInfo,
    Resolve,
    ResumePolicy,
    Severity,
    TriageReply,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Waive,
    Withdraw,
)
from service import Service
from service.collections import Approve, RefuseSuspension
from service.errors import Refused
from service.users import Person, Role
from web.i18n import _


class Kind(StrEnum):
    TEXT = "text"
    TEXTAREA = "textarea"
    EMAIL = "email"
    MONEY = "money"
    DATE = "date"
    SELECT = "select"


@dataclass(frozen=True)
class Field:
    name: str  # the model's field, and the form's
    label: str
    kind: Kind = Kind.TEXT
    choices: tuple[str, ...] = ()
    required: bool = True


AGENTS = frozenset({Role.AGENT, Role.MANAGER})
MANAGERS = frozenset({Role.MANAGER})
FINANCE = frozenset({Role.FINANCE})

Values = dict[str, Any]
# (what the form gave, blank fields left out; who acts; the service; the case, invoice or 21Vianet
# invoice the page is about) -> the model's fields
Prepare = Callable[[Values, Person, Service, str], Awaitable[Values]]
# (the service, the page's key, the validated model) -> what the service answered
Call = Callable[[Service, str, Any], Awaitable[Any]]


async def _by(values: Values, person: Person, service: Service, key: str) -> Values:
    return {**values, "by": person.email}


async def _act_on_case(service: Service, key: str, model: Any) -> Any:
    return await service.cases.act(key, model)


async def _act_on_invoice(service: Service, key: str, model: Any) -> Any:
    return await service.collections.act(key, model)


@dataclass(frozen=True)
class Action:
    name: str  # in the URL
    label: str
    roles: frozenset[Role]
    model: type[BaseModel]
    fields: tuple[Field, ...] = ()
    call: Call = _act_on_case
    prepare: Prepare = _by
    danger: bool = False  # shown apart: it ends or overrides something
    hint: str = ""


def china_end_of_day(value: str) -> datetime:
    """A date the person picked, as the end of that day in China."""
    day = datetime.strptime(value, "%Y-%m-%d").date()
    return datetime.combine(day, time(23, 59), CHINA_STANDARD_TIME)


# --------------------------------------------------------------------------- cases


async def _take(values: Values, person: Person, service: Service, case_id: str) -> Values:
    """An agent takes an unassigned case; giving a case someone owns to another is a manager's."""
    view = await service.cases.show(case_id)
    if view.owner not in (None, person.email) and Role.MANAGER not in person.roles:
        raise Refused(f"case {case_id} is {view.owner}'s: a manager reassigns it")
    return {"agent": person.email, "by": person.email}


CASE_ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("take", _("Take this case"), AGENTS, Assign, prepare=_take),
        Action(
            "note", _("Add a note"), AGENTS, AddNote, (Field("text", _("Note"), Kind.TEXTAREA),)
        ),
        Action(
            "request-info",
            _("Ask the customer"),
            AGENTS,
            RequestInfo,
            (Field("question", _("Question"), Kind.TEXTAREA),),
            hint=_("The customer is emailed; the SLA clocks pause until they answer."),
        ),
        Action(
            "customer-reply",
            _("Record the customer's reply"),
            AGENTS,
            CustomerReply,
            (Field("text", _("What the customer said"), Kind.TEXTAREA),),
        ),
        Action(
            "escalate",
            _("Escalate to 21Vianet"),
            AGENTS,
            Escalate,
            (
                Field("reason", _("Reason"), Kind.TEXTAREA),
                Field("severity", _("Severity"), Kind.SELECT, tuple(s.value for s in Severity)),
            ),
        ),
        Action(
            "vianet-ticket",
            _("Record the 21Vianet ticket number"),
            AGENTS,
            VianetTicket,
            (Field("ticket_number", _("Ticket number")),),
        ),
        Action(
            "vianet-response",
            _("Record 21Vianet's answer"),
            AGENTS,
            VianetResponse,
            (Field("text", _("Answer"), Kind.TEXTAREA),),
        ),
        Action(
            "resolve",
            _("Resolve"),
            AGENTS,
            Resolve,
            (
                Field("outcome", _("Outcome"), Kind.SELECT, tuple(o.value for o in Outcome)),
                Field("summary", _("Summary for the customer"), Kind.TEXTAREA),
                Field("credit_amount", _("Credit or refund amount"), Kind.MONEY, required=False),
            ),
        ),
        Action(
            "contact",
            _("Correct the customer's email"),
            AGENTS,
            UpdateContact,
            (
                Field("email", _("Email"), Kind.EMAIL),
                Field("locale", _("Language"), Kind.SELECT, tuple(x.value for x in Locale), False),
            ),
        ),
        Action(
            "confirm",
            _("The customer confirmed the resolution"),
            AGENTS,
            Confirm,
            hint=_("Closes the case with the final email."),
        ),
        Action(
            "reopen", _("Reopen"), AGENTS, Reopen, (Field("reason", _("Reason"), Kind.TEXTAREA),)
        ),
        Action(
            "withdraw",
            _("Withdraw the case"),
            AGENTS,
            Withdraw,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            danger=True,
        ),
        Action(
            "assign",
            _("Reassign"),
            MANAGERS,
            Assign,
            (Field("agent", _("Agent's email"), Kind.EMAIL),),
        ),
    )
}


# --------------------------------------------------------------------------- collections


async def _promise(values: Values, person: Person, service: Service, key: str) -> Values:
    until = values.get("until")
    if isinstance(until, str):
        try:
            values["until"] = china_end_of_day(until)
        except ValueError:
            raise Refused("until: a date, YYYY-MM-DD") from None
    return {**values, "by": person.email}


async def _payment(values: Values, person: Person, service: Service, invoice_id: str) -> Values:
    received = datetime.now(UTC)
    return {**values, "invoice_id": invoice_id, "received_at": received, "by": person.email}


async def _lift_fraud(service: Service, invoice_id: str, model: Any) -> Any:
    """The invoice's fraud hold, lifted on its customer's account (the subscriptions' only
    writer): what nothing else holds is reactivated. The page shows the invoice again."""
    view = await service.collections.show(invoice_id)
    await service.accounts.lift_fraud(view.customer.tenant_id, model)
    return await service.collections.show(invoice_id)


async def _this_invoice(values: Values, person: Person, service: Service, key: str) -> Values:
    return {**values, "invoice_id": key, "by": person.email}


# A manager's action on an invoice is one entry: the page offers its form to managers only, the
# route refuses anyone else with 403, and test_every_page_text_has_a_chinese_translation asks for
# its texts in web/locale/.
COLLECTIONS_ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action(
            "dispute",
            _("Open a dispute"),
            AGENTS,
            OpenDispute,
            (
                Field("description", _("What the customer disputes"), Kind.TEXTAREA),
                Field("disputed_amount", _("Disputed amount"), Kind.MONEY, required=False),
                Field("case_id", _("Existing case (optional)"), required=False),
            ),
            call=_act_on_invoice,
            hint=_("Pauses the policy: nothing is suspended while the invoice is disputed."),
        ),
        Action(
            "promise",
            _("Record a promise to pay"),
            AGENTS,
            PromiseToPay,
            (Field("until", _("Until"), Kind.DATE),),
            call=_act_on_invoice,
            prepare=_promise,
        ),
        Action(
            "triage",
            _("Triage the customer's reply"),
            AGENTS,
            TriageReply,
            (
                Field(
                    "decision",
                    _("Decision"),
                    Kind.SELECT,
                    ("no-action", "contact-confirmed"),
                ),
            ),
            call=_act_on_invoice,
        ),
        Action(
            "fraud",
            _("Report fraud or misuse"),
            AGENTS,
            ReportFraud,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=_act_on_invoice,
            danger=True,
            hint=_("Suspends every subscription of the invoice at once; a manager is alerted."),
        ),
        Action(
            "payment",
            _("Record a payment"),
            FINANCE,
            PaymentReceived,
            (
                Field("payment_id", _("Payment id")),
                Field("amount", _("Amount"), Kind.MONEY),
            ),
            call=_act_on_invoice,
            prepare=_payment,
        ),
        Action(
            "contact",
            _("Correct the collections contact"),
            AGENTS,
            CorrectContact,
            (Field("email", _("Email"), Kind.EMAIL),),
            call=_act_on_invoice,
            hint=_("After a notice bounced: the final notice goes again to the new address."),
        ),
        Action(
            "approve-suspension",
            _("Approve the suspension"),
            MANAGERS,
            Approve,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=_act_on_invoice,
            danger=True,
            hint=_("The customer's subscriptions are suspended in business hours."),
        ),
        Action(
            "refuse-suspension",
            _("Refuse the suspension"),
            MANAGERS,
            RefuseSuspension,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=_act_on_invoice,
            hint=_("Nothing is suspended; you take the invoice over."),
        ),
        Action(
            "lift-fraud",
            _("Lift the fraud hold"),
            MANAGERS,
            LiftFraud,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=_lift_fraud,
            prepare=_this_invoice,
            danger=True,
            hint=_("Only this invoice's fraud hold; what nothing else holds is reactivated."),
        ),
        Action(
            "resume",
            _("Resume the policy"),
            MANAGERS,
            ResumePolicy,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=_act_on_invoice,
        ),
        Action(
            "waive",
            _("Waive"),
            MANAGERS,
            Waive,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=_act_on_invoice,
            danger=True,
            hint=_("Ends collections and releases its holds (a fraud hold stays)."),
        ),
    )
}


# --------------------------------------------------------------------------- payables


async def _record(values: Values, person: Person, service: Service, key: str) -> Values:
    settings = service.settings
    return {
        **values,
        "recorded_by": person.email,
        "finance_email": settings.finance_email,
        "manager_email": settings.case_policy().manager_email,
        "remind_days_before": settings.vianet_invoice_reminder_days,
        "locale": settings.finance_locale,
    }


async def _paid(values: Values, person: Person, service: Service, key: str) -> Values:
    return {**values, "paid_at": datetime.now(UTC), "by": person.email}


async def _record_invoice(service: Service, key: str, model: Any) -> Any:
    return await service.vianet_invoices.record(model)


async def _mark_paid(service: Service, key: str, model: Any) -> Any:
    return await service.vianet_invoices.mark_paid(key, model)


PAYABLES_ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action(
            "record",
            _("Record a 21Vianet invoice"),
            FINANCE,
            RecordVianetInvoice,
            (
                Field("invoice_number", _("Invoice number")),
                Field("amount", _("Amount (CNY)"), Kind.MONEY),
                Field("due_date", _("Due date"), Kind.DATE),
            ),
            call=_record_invoice,
            prepare=_record,
        ),
        Action(
            "paid",
            _("Mark paid"),
            FINANCE,
            MarkVianetPaid,
            (Field("reference", _("Bank transfer reference")),),
            call=_mark_paid,
            prepare=_paid,
        ),
    )
}
