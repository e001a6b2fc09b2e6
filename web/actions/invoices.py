"""The actions of an invoice page (its collections, and its customer's account)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.models import (
    CorrectContact,
    LiftFraud,
    OpenDispute,
    PaymentReceived,
    PromiseToPay,
    ReportFraud,
    ResumePolicy,
    TriageReply,
    Waive,
)
from service import Service
from service.collections import Approve, RefuseSuspension
from service.errors import Refused
from service.users import Person
from web.actions.base import (
    AGENTS,
    FINANCE,
    MANAGERS,
    Action,
    Field,
    Kind,
    Values,
    act_on_invoice,
    china_end_of_day,
)
from web.i18n import _


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
            call=act_on_invoice,
            hint=_("Pauses the policy: nothing is suspended while the invoice is disputed."),
        ),
        Action(
            "promise",
            _("Record a promise to pay"),
            AGENTS,
            PromiseToPay,
            (Field("until", _("Until"), Kind.DATE),),
            call=act_on_invoice,
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
            call=act_on_invoice,
        ),
        Action(
            "fraud",
            _("Report fraud or misuse"),
            AGENTS,
            ReportFraud,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=act_on_invoice,
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
            call=act_on_invoice,
            prepare=_payment,
        ),
        Action(
            "contact",
            _("Correct the collections contact"),
            AGENTS,
            CorrectContact,
            (Field("email", _("Email"), Kind.EMAIL),),
            call=act_on_invoice,
            hint=_("After a notice bounced: the final notice goes again to the new address."),
        ),
        Action(
            "approve-suspension",
            _("Approve the suspension"),
            MANAGERS,
            Approve,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=act_on_invoice,
            danger=True,
            hint=_("The customer's subscriptions are suspended in business hours."),
        ),
        Action(
            "refuse-suspension",
            _("Refuse the suspension"),
            MANAGERS,
            RefuseSuspension,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=act_on_invoice,
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
            call=act_on_invoice,
        ),
        Action(
            "waive",
            _("Waive"),
            MANAGERS,
            Waive,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=act_on_invoice,
            danger=True,
            hint=_("Ends collections and releases its holds (a fraud hold stays)."),
        ),
    )
}
