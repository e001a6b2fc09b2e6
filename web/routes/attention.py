"""需要处理 on a page: a manager retries or skips a workflow's failed step, or marks its flag
handled (`web/actions/attention.py`); then back to the page the person came from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from core.alerts import workspace_page
from core.models import About
from service.errors import NotFound
from service.users import Person
from web.actions.attention import attention_actions
from web.pages import choice
from web.workspace import WorkspaceDep

router = APIRouter()


@router.post("/attention/{about}/{key}/actions/{name}")
async def attention_action(
    request: Request, about: str, key: str, name: str, ws: WorkspaceDep
) -> Response:
    subject = choice(About, about)
    if subject is None:
        raise NotFound(f"no workflows of kind {about!r}")

    async def refused(
        request: Request, person: Person, key: str, status_code: int, **problem: Any
    ) -> Response:
        message = problem.get("refusal") or ""
        return ws.pages.render(request, "error.html", person, status_code, message=message)

    back = workspace_page(subject, key).partition("#")[0]
    return await ws.act(request, attention_actions(subject), name, key, back, refused)
