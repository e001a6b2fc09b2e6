"""The actions of the fapiao tasks page (finance) and the agent's request for a fapiao on a case."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.models import (
    BuyerMustConfirm,
    FapiaoKind,
    FapiaoRecorded,
    FapiaoTaskKind,
    RecordFapiao,
    RequestFapiao,
)
from service import Service
from service.users import Person
from web.actions.base import AGENTS, FINANCE, Action, Field, Kind, Values
from web.i18n import _


async def _recorded_by(values: Values, person: Person, service: Service, key: str) -> Values:
    return {**values, "recorded_by": person.email}


async def _record(service: Service, key: str, model: Any) -> Any:
    return await service.fapiao.record(model)


async def _done(service: Service, case_id: str, model: Any) -> Any:
    return await service.fapiao.record_on_case(case_id, model, datetime.now(UTC).date())


async def _buyer(service: Service, case_id: str, model: Any) -> Any:
    return await service.fapiao.buyer_must_confirm(case_id, model)


async def _request(service: Service, case_id: str, model: Any) -> Any:
    return await service.fapiao.request(case_id, model)


# 数电票 numbers are 20 digits: the field says so
NUMBER = _("Fapiao number (数电票, 20 digits)")

FAPIAO_ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action(
            "record",
            _("Record a fapiao of a bill"),
            FINANCE,
            RecordFapiao,
            (
                Field("invoice_id", _("Bill (invoice id)")),
                Field("fapiao_number", NUMBER),
                Field("kind", _("Kind"), Kind.SELECT, tuple(k.value for k in FapiaoKind)),
                Field("issued_on", _("Issued on"), Kind.DATE),
                Field("buyer_name", _("Buyer's name (抬头)")),
                Field("buyer_tax_id", _("Buyer's tax id (税号)")),
                Field("reverses", _("Reverses (red-letter: the blue fapiao)"), required=False),
            ),
            call=_record,
            prepare=_recorded_by,
        ),
        Action(
            "done",
            _("Record the number and mark done"),
            FINANCE,
            FapiaoRecorded,
            (
                Field("fapiao_number", NUMBER),
                Field(
                    "red_fapiao_number",
                    _("Red-letter fapiao number (reissue: the one reversing the old fapiao)"),
                    required=False,
                ),
            ),
            call=_done,
        ),
        Action(
            "buyer",
            _("The buyer must confirm in the tax system"),
            FINANCE,
            BuyerMustConfirm,
            call=_buyer,
            hint=_(
                "The buyer already used the fapiao: the customer is asked to confirm the "
                "red-letter information and reminded on working days."
            ),
        ),
    )
}

REQUEST_FAPIAO = Action(
    "request-fapiao",
    _("Ask finance for a fapiao"),
    AGENTS,
    RequestFapiao,
    (
        Field("kind", _("Kind"), Kind.SELECT, tuple(k.value for k in FapiaoTaskKind)),
        Field("buyer_name", _("Buyer's name (抬头)"), required=False),
        Field("buyer_tax_id", _("Buyer's tax id (税号)"), required=False),
        Field("buyer_address_phone", _("Buyer's address and phone"), required=False),
        Field("buyer_bank_account", _("Buyer's bank and account"), required=False),
    ),
    call=_request,
    hint=_("Finance sees it on the fapiao tasks page; the case waits for the fapiao number."),
)
