"""The invoices in collections: their list (from the database projection), an invoice's page
(its workflow's view, its customer's account, the policy) and its actions."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.errors import NotFound
from service.users import Person
from web import actions as registry
from web.pages import page_number
from web.workspace import Workspace, WorkspaceDep, allowed

router = APIRouter()


@router.get("/collections")
async def collections_page(
    request: Request, ws: WorkspaceDep, q: str = "", page: str | None = None
) -> Response:
    person = await ws.me(request)
    service = await ws.connection.get()
    listed = await service.workspace.collections(q.strip()[:200], page_number(page))
    return ws.pages.render(
        request,
        "collections.html",
        person,
        listed=listed,
        q=q,
        query=urlencode({"q": q} if q else {}),
    )


async def _invoice(
    ws: Workspace,
    request: Request,
    person: Person,
    invoice_id: str,
    status_code: int = 200,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    view = await service.collections.show(invoice_id)
    try:  # the customer's account: every hold on their subscriptions, this invoice's or not
        account = await service.accounts.show(view.customer.tenant_id)
    except NotFound:
        account = None  # nothing of theirs was ever held
    return ws.workflow_page(
        request,
        person,
        "invoice.html",
        f"/collections/{quote(invoice_id)}",
        service,
        view,
        allowed(registry.COLLECTIONS_ACTIONS, person),
        status_code,
        problem,
        policy=view.policy or service.settings.collections_policy(),
        account=account,
    )


@router.get("/collections/{invoice_id}")
async def invoice_page(request: Request, invoice_id: str, ws: WorkspaceDep) -> Response:
    return await _invoice(ws, request, await ws.me(request), invoice_id)


@router.post("/collections/{invoice_id}/actions/{name}")
async def invoice_action(
    request: Request, invoice_id: str, name: str, ws: WorkspaceDep
) -> Response:
    back = f"/collections/{quote(invoice_id)}"
    actions = registry.COLLECTIONS_ACTIONS
    return await ws.act(request, actions, name, invoice_id, back, partial(_invoice, ws))
