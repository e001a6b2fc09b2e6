"""The actions of the payables page: the partner's invoices from 21Vianet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.models import MarkVianetPaid, RecordVianetInvoice
from service import Service
from service.users import Person
from web.actions.base import FINANCE, Action, Field, Kind, Values
from web.i18n import _


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
