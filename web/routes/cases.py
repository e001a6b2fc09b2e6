"""A case's page (its workflow's view, the thread, the actions the person may take) and its
actions."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from core.ids import case_workflow_id
from core.models import MERGEABLE_STATUSES, CaseStatus
from service.users import Person, Role
from web import actions as registry
from web.composer import composer
from web.routes.attachments import VIEWABLE
from web.routes.inbox import OUTCOMES
from web.workspace import Workspace, WorkspaceDep, allowed

router = APIRouter()


def may_take(owner: str | None, person: Person) -> bool:
    """Whether "take this case" is worth offering (web/actions/cases.py decides when it is sent)."""
    return owner != person.email and (owner is None or Role.MANAGER in person.roles)


async def show_case(
    ws: Workspace,
    request: Request,
    person: Person,
    case_id: str,
    status_code: int = 200,
    reply: dict[str, Any] | None = None,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    view = await service.cases.show(case_id)
    linked = await service.links.of(case_id)
    theirs = await service.links.of_customer(view.details.customer.tenant_id, but=case_id)
    # the cases each action offers: merge into the customer's open ones, link any other
    choices = {
        "merge": [row for row in theirs if not CaseStatus(row.status).is_final],
        "link": [row for row in theirs if row.case_id not in {r.case_id for r in linked}],
        "unlink": linked,
    }
    shown = {
        "take": may_take(view.owner, person),
        "merge": view.status in MERGEABLE_STATUSES,
        "unlink": bool(linked),
    }
    actions = [
        action for action in allowed(registry.CASE_ACTIONS, person) if shown.get(action.name, True)
    ]
    cases = [case_id, *view.merged_cases]  # a duplicate merged into it: its emails shown here
    return ws.workflow_page(
        request,
        person,
        "case.html",
        f"/cases/{quote(case_id)}",
        service,
        view,
        actions,
        status_code,
        problem,
        thread=sorted(
            [
                *[email for one in cases for email in await service.workspace.thread(one)],
                *await service.inbox.of_workflows([case_workflow_id(one) for one in cases]),
            ],
            key=lambda email: email.at,
        ),
        case_choices=choices,
        linked=linked,
        merged=[
            (one, await service.workspace.timeline(one), await service.attachments.of(one))
            for one in view.merged_cases
        ],
        outcomes=OUTCOMES,
        rating=await service.ratings.of(case_id),
        people=await ws.users.case_owners() if any(a.name == "assign" for a in actions) else [],
        attachments=await service.attachments.of(case_id),
        viewable=VIEWABLE,
        composer=await composer(service, request, person, view, **(reply or {})),
    )


@router.get("/cases/{case_id}")
async def case_page(request: Request, case_id: str, ws: WorkspaceDep) -> Response:
    return await show_case(ws, request, await ws.me(request), case_id)


@router.post("/cases/{case_id}/actions/{name}")
async def case_action(request: Request, case_id: str, name: str, ws: WorkspaceDep) -> Response:
    back = f"/cases/{quote(case_id)}"
    return await ws.act(request, registry.CASE_ACTIONS, name, case_id, back, partial(show_case, ws))
