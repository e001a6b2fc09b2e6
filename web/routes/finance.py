"""Finance's pages: the landing page linking them, the customers' credit balances (finance
applies or refunds credit) and the refunds awaiting a manager's approval (a manager decides)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from core.models.ledger import RefundStatus
from service.users import Person
from web import actions as registry
from web.workspace import Workspace, WorkspaceDep, allowed

router = APIRouter()


@router.get("/finance")
async def finance_page(request: Request, ws: WorkspaceDep) -> Response:
    person = await ws.me(request)
    service = await ws.connection.get()
    credits, awaiting = await service.ledger.balances(), await service.ledger.awaiting()
    return ws.pages.render(
        request,
        "finance.html",
        person,
        200,
        credits=len(credits),
        awaiting=sum(_waiting(row) for row in awaiting),
    )


def _waiting(row: Any) -> int:
    return sum(r.status is RefundStatus.AWAITING_APPROVAL for r in row.ledger.refunds)


async def _credits(
    ws: Workspace,
    request: Request,
    person: Person,
    key: str,
    status_code: int = 200,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    return ws.pages.render(
        request,
        "credits.html",
        person,
        status_code,
        rows=await service.ledger.balances(),
        actions=allowed(registry.CREDIT_ACTIONS, person),
        failed_key=key,
        done=request.query_params.get("done"),
        **problem,
    )


async def _refunds(
    ws: Workspace,
    request: Request,
    person: Person,
    key: str,
    status_code: int = 200,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    waiting = [
        (row, refund)
        for row in await service.ledger.awaiting()
        for refund in row.ledger.refunds
        if refund.status is RefundStatus.AWAITING_APPROVAL
    ]
    return ws.pages.render(
        request,
        "refunds.html",
        person,
        status_code,
        waiting=waiting,
        actions=allowed(registry.REFUND_ACTIONS, person),
        failed_key=key,
        done=request.query_params.get("done"),
        **problem,
    )


@router.get("/finance/credits")
async def credits_page(request: Request, ws: WorkspaceDep) -> Response:
    return await _credits(ws, request, await ws.me(request), "")


@router.post("/finance/credits/{tenant_id}/actions/{name}")
async def credit_action(request: Request, tenant_id: str, name: str, ws: WorkspaceDep) -> Response:
    show = partial(_credits, ws)
    return await ws.act(request, registry.CREDIT_ACTIONS, name, tenant_id, "/finance/credits", show)


@router.get("/finance/refunds")
async def refunds_page(request: Request, ws: WorkspaceDep) -> Response:
    return await _refunds(ws, request, await ws.me(request), "")


@router.post("/finance/refunds/{tenant_id}/{refund_id}/actions/{name}")
async def refund_action(
    request: Request, tenant_id: str, refund_id: str, name: str, ws: WorkspaceDep
) -> Response:
    show = partial(_refunds, ws)
    key = f"{tenant_id}/{refund_id}"
    return await ws.act(request, registry.REFUND_ACTIONS, name, key, "/finance/refunds", show)
