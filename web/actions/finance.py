"""The actions of finance's pages: a customer's credit applied to an open invoice or refunded
(finance), a refund above REFUND_APPROVAL_ABOVE approved or refused (a manager). A credit row's
key is the tenant id; a refund's is `<tenant id>/<refund id>`."""

from __future__ import annotations

from typing import Any

from core.models.ledger import ApplyCredit, DecideRefund, RequestRefund
from service import Service
from service.users import Person
from web.actions.base import FINANCE, MANAGERS, Action, Field, Kind, Values
from web.i18n import _

CURRENCIES = ("CNY", "USD", "EUR")


async def _refund_of(values: Values, person: Person, service: Service, key: str) -> Values:
    return {**values, "refund_id": key.partition("/")[2], "by": person.email}


async def _apply(service: Service, key: str, model: Any) -> Any:
    return await service.ledger.apply(key, model)


async def _refund(service: Service, key: str, model: Any) -> Any:
    return await service.ledger.request_refund(key, model)


async def _approve(service: Service, key: str, model: Any) -> Any:
    return await service.ledger.approve_refund(key.partition("/")[0], model)


async def _refuse(service: Service, key: str, model: Any) -> Any:
    return await service.ledger.refuse_refund(key.partition("/")[0], model)


CREDIT_ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action(
            "apply",
            _("Apply to an invoice"),
            FINANCE,
            ApplyCredit,
            (
                Field("invoice_id", _("Invoice")),
                Field("currency", _("Currency"), Kind.SELECT, CURRENCIES),
                Field("amount", _("Amount"), Kind.MONEY),
            ),
            call=_apply,
            hint=_("An open invoice of this customer, in the same currency, at most its balance."),
        ),
        Action(
            "refund",
            _("Refund"),
            FINANCE,
            RequestRefund,
            (
                Field("currency", _("Currency"), Kind.SELECT, CURRENCIES),
                Field("amount", _("Amount"), Kind.MONEY),
                Field("reason", _("Reason")),
            ),
            call=_refund,
            hint=_("Above the approval threshold, a manager approves it before it is refunded."),
        ),
    )
}

REFUND_ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action(
            "approve",
            _("Approve the refund"),
            MANAGERS,
            DecideRefund,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=_approve,
            prepare=_refund_of,
        ),
        Action(
            "refuse",
            _("Refuse the refund"),
            MANAGERS,
            DecideRefund,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            call=_refuse,
            prepare=_refund_of,
            danger=True,
        ),
    )
}
