"""The partner's payables to 21Vianet: their list, recording one, marking one paid (finance)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.users import Person
from web import actions as registry
from web.pages import page_number
from web.workspace import Workspace, WorkspaceDep, allowed

router = APIRouter()


async def _payables(
    ws: Workspace,
    request: Request,
    person: Person,
    key: str,
    status_code: int = 200,
    page: int = 1,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    listed = await service.workspace.payables(page)
    return ws.pages.render(
        request,
        "payables.html",
        person,
        status_code,
        listed=listed,
        record=allowed({"record": registry.PAYABLES_ACTIONS["record"]}, person),
        paid=registry.PAYABLES_ACTIONS["paid"] if person.may(registry.FINANCE) else None,
        failed_key=key,
        done=request.query_params.get("done"),
        **problem,
    )


@router.get("/payables")
async def payables_page(request: Request, ws: WorkspaceDep, page: str | None = None) -> Response:
    return await _payables(ws, request, await ws.me(request), "", page=page_number(page))


@router.post("/payables/actions/record")
async def record_payable(request: Request, ws: WorkspaceDep) -> Response:
    show = partial(_payables, ws)
    return await ws.act(request, registry.PAYABLES_ACTIONS, "record", "", "/payables", show)


@router.post("/payables/{number}/actions/paid")
async def payable_paid(request: Request, number: str, ws: WorkspaceDep) -> Response:
    show = partial(_payables, ws)
    return await ws.act(request, registry.PAYABLES_ACTIONS, "paid", number, "/payables", show)
