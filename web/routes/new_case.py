"""Opening a case by hand (a phone call, a walk-in question): the fields of the API's
`POST /v1/cases` (`core.models.CaseRequest`, validated by the same model), the customer found
among the tenants the product already knows, the signed-in person as the one who opened it.

Without JavaScript: finding a customer is a GET form whose answers are links that fill the form
in. A double submit opens one case: the form carries a request key (a ULID made when the page was
shown) and the case id is derived from it and the person, as the API derives it from a request's
Idempotency-Key (`core.ids.request_case_id`); the second start finds the case of the first."""

from __future__ import annotations

from contextlib import suppress
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.ids import request_case_id, ulid_time
from core.models import CURRENCY, CaseForm, Category, Locale, Priority
from service.errors import AlreadyExists, NotFound, Refused
from service.inbox import Letter
from service.users import Person
from web.actions import AGENTS, Field, Kind
from web.forms import (
    NOT_AN_OWNER,
    Problem,
    new_request_key,
    problem,
    problems_of,
    sent_values,
)
from web.i18n import _
from web.workspace import Workspace, WorkspaceDep

router = APIRouter()
PATH = "/cases/new"
REQUEST_KEY = "request_key"
INBOX = "inbox"  # the inbox email the case is opened from
PREFILLED_CHARS = 8_000
OPENED = _("opened")
STALE_FORM = _("This form is incomplete or too old. Nothing was opened: reload the page.")
# every field of CaseRequest, once (test_new_case checks the two agree); the model validates them
CASE_FIELDS: tuple[Field, ...] = (
    Field("tenant_id", _("Tenant id")),
    Field("name", _("Customer name")),
    Field("email", _("Customer's email"), Kind.EMAIL),
    Field("locale", _("Customer's language"), Kind.SELECT, tuple(x.value for x in Locale)),
    Field("category", _("Category"), Kind.SELECT, tuple(c.value for c in Category)),
    Field("priority", _("Priority"), Kind.SELECT, tuple(p.value for p in Priority)),
    Field("description", _("Description"), Kind.TEXTAREA),
    Field("invoice_id", _("Invoice"), required=False),
    Field("subscription_id", _("Subscription"), required=False),
    Field("amount", _("Disputed amount"), Kind.MONEY, required=False),
    Field("currency", _("Currency"), required=False),
    Field("owner", _("Owner"), Kind.PERSON, required=False),
)
FIELDS = {field.name: field for field in CASE_FIELDS}
DEFAULTS = {"locale": Locale.ZH_CN.value, "priority": Priority.NORMAL.value, "currency": CURRENCY}


async def _page(
    ws: Workspace,
    request: Request,
    person: Person,
    values: dict[str, str],
    status_code: int = 200,
    problems: list[Problem] | None = None,
    key: str | None = None,
    inbox: int | None = None,
) -> Response:
    service = await ws.connection.get()
    find = request.query_params.get("find", "").strip()[:200]
    return ws.pages.render(
        request,
        "new_case.html",
        person,
        status_code,
        fields=CASE_FIELDS,
        values=values,
        problems={p.field: p for p in problems or []},
        request_key=key or new_request_key(),
        people=await ws.users.case_owners(),
        find=find,
        found=await service.customers.find(find) if find else None,
        inbox=inbox,
    )


@router.get(PATH)
async def new_case_page(request: Request, ws: WorkspaceDep, tenant: str = "") -> Response:
    """The form; any of its fields may come filled in as a query parameter (an email of the
    inbox: ``inbox`` its id, filed on the case once it is opened); a known tenant's record
    fills in the customer."""
    person = await ws.me(request, AGENTS)
    values = dict(DEFAULTS)
    service = await ws.connection.get()
    inbox = _inbox_id(request.query_params)
    if inbox is not None:
        try:
            letter = await service.inbox.letter(inbox)
        except NotFound:
            inbox = None
        else:
            values.update(from_letter(letter))
            if not tenant and letter.sender:  # a customer the product knows by this address
                same = [
                    k
                    for k in await service.customers.find(letter.sender)
                    if k.email.lower() == letter.sender.lower()
                ]
                tenant = same[0].tenant_id if same else ""
    values.update(
        {k: v[:PREFILLED_CHARS] for k, v in request.query_params.items() if k in FIELDS and v}
    )
    if tenant:
        known = await service.customers.get(tenant)
        if known is not None:
            values.update(
                tenant_id=known.tenant_id,
                name=known.name,
                email=known.email,
                locale=known.locale.value,
            )
    return await _page(ws, request, person, values, inbox=inbox)


@router.post(PATH)
async def open_case(request: Request, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, AGENTS)
    form = await ws.checked_form(request)
    sent = sent_values(form, CASE_FIELDS)
    key = str(form.get(REQUEST_KEY, ""))
    made = ulid_time(key)
    inbox = _inbox_id(form)
    if made is None:
        stale = Problem(REQUEST_KEY, _("Form"), STALE_FORM)
        return await _page(ws, request, person, sent, 400, [stale], inbox=inbox)
    checked, problems = await _checked(ws, sent, person)
    if checked is None:
        return await _page(ws, request, person, sent, 422, problems, key, inbox)
    case_id = request_case_id(made, person.email, key)
    service = await ws.connection.get()
    with suppress(AlreadyExists):  # the same form sent again: the case its first sending opened
        await service.cases.open(service.cases.prepare(checked, case_id=case_id))
    if inbox is not None:  # its email is the case's (someone may have filed it elsewhere since)
        with suppress(NotFound, Refused):
            await service.inbox.attach(inbox, case_id, person.email)
    return RedirectResponse(f"/cases/{quote(case_id)}?done={OPENED}", status_code=303)


def from_letter(letter: Letter) -> dict[str, str]:
    """The fields an email of the inbox fills in: its sender, and its subject and text."""
    text = f"{letter.subject}\n\n{letter.text}".strip()
    found = {"email": letter.sender, "name": letter.sender_name, "description": text}
    return {k: v[:PREFILLED_CHARS] for k, v in found.items() if v}


def _inbox_id(values: Any) -> int | None:
    """The inbox email a form was opened from (web/routes/inbox.py), if any."""
    sent = str(values.get(INBOX, ""))
    return int(sent) if sent.isdigit() and len(sent) < 12 else None


async def _checked(
    ws: Workspace, sent: dict[str, str], person: Person
) -> tuple[CaseForm | None, list[Problem]]:
    """The form as the model has it, or what is wrong with it: the model's checks, and an owner
    that is no active agent's or manager's account."""
    filled: dict[str, Any] = {name: value for name, value in sent.items() if value}
    problems: list[Problem] = []
    if filled.get("owner"):
        try:
            filled["owner"] = await ws.users.case_owner(filled["owner"], "owner")
        except Refused:
            problems.append(problem(FIELDS["owner"], NOT_AN_OWNER))
    try:
        checked = CaseForm(**filled, opened_by=person.email)
    except ValidationError as err:
        wrong = problems_of(err, CASE_FIELDS)
        return None, wrong + [p for p in problems if p.field not in {w.field for w in wrong}]
    return (None, problems) if problems else (checked, [])
