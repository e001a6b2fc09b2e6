"""Finance's fapiao tasks: what cases wait for (issue, reissue, red-letter) with a form to record
the number, and the fapiao recorded per bill."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.users import Person
from web import actions as registry
from web.workspace import Workspace, WorkspaceDep, allowed

router = APIRouter()


async def _tasks(
    ws: Workspace,
    request: Request,
    person: Person,
    key: str,
    status_code: int = 200,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    finance = person.may(registry.FINANCE)
    return ws.pages.render(
        request,
        "fapiao.html",
        person,
        status_code,
        tasks=await service.workspace.fapiao_tasks(),
        recorded=await service.workspace.fapiao_recorded(),
        record=allowed({"record": registry.FAPIAO_ACTIONS["record"]}, person),
        done=registry.FAPIAO_ACTIONS["done"] if finance else None,
        buyer=registry.FAPIAO_ACTIONS["buyer"] if finance else None,
        failed_key=key,
        done_message=request.query_params.get("done"),
        **problem,
    )


@router.get("/fapiao")
async def fapiao_page(request: Request, ws: WorkspaceDep) -> Response:
    return await _tasks(ws, request, await ws.me(request), "")


@router.post("/fapiao/actions/record")
async def record_fapiao(request: Request, ws: WorkspaceDep) -> Response:
    show = partial(_tasks, ws)
    return await ws.act(request, registry.FAPIAO_ACTIONS, "record", "", "/fapiao", show)


@router.post("/fapiao/{case_id}/actions/{name}")
async def task_action(request: Request, case_id: str, name: str, ws: WorkspaceDep) -> Response:
    show = partial(_tasks, ws)
    return await ws.act(request, registry.FAPIAO_ACTIONS, name, case_id, "/fapiao", show)
