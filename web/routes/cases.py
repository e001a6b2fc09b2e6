"""A case's page (its workflow's view, the thread, the actions the person may take) and its
actions."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from core import search
from core.ids import case_workflow_id
from core.models import MERGEABLE_STATUSES, Attention, CaseStatus, CaseView
from service import Service
from service.errors import Unavailable
from service.users import Person, Role
from web import actions as registry
from web.composer import composer
from web.routes.attachments import VIEWABLE
from web.routes.inbox import OUTCOMES
from web.workspace import Workspace, WorkspaceDep, allowed

router = APIRouter()
STUCK_QUERY_SECONDS = 5.0
ATTENTION_SECONDS = 0.1
# the workflow's own words for it (workflows/base.py), where it did not answer in time
STUCK = "NEEDS ATTENTION: a step failed (retry-step after a fix, or skip-step --reason)"


def may_take(owner: str | None, person: Person) -> bool:
    """Whether "take this case" is worth offering (web/actions/cases.py decides when it is sent)."""
    return owner != person.email and (owner is None or Role.MANAGER in person.roles)


async def case_view(service: Service, case_id: str) -> CaseView:
    """The case as its workflow last saved it (an agent's action is saved before its update
    answers): a page never waits on a busy worker. The workflow is asked only where nothing is
    saved yet (a case just opened, or saved by an older build), or, for a few seconds, while a
    failed step holds its saves back until an operator acts (Temporal's server says so, within
    ATTENTION_SECONDS)."""
    saved, attention = await asyncio.gather(
        service.workspace.case(case_id), _attention(service, case_id)
    )
    if saved is None:
        return await service.cases.show(case_id)
    if attention != search.FAILED_STEP:
        return saved
    try:
        return await asyncio.wait_for(service.cases.show(case_id), STUCK_QUERY_SECONDS)
    except (TimeoutError, Unavailable):
        stuck = {
            "needs_attention": saved.needs_attention or STUCK,
            "attention": Attention.FAILED_STEP,
        }
        return saved.model_copy(update=stuck)


async def _attention(service: Service, case_id: str) -> str | None:
    """The case's NeedsAttention, if Temporal's server says it soon: a server busy with a
    billing run's starts holds no page up (the page is then the saved case)."""
    try:
        return await asyncio.wait_for(service.cases.attention(case_id), ATTENTION_SECONDS)
    except TimeoutError:
        return None


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
    view = await case_view(service, case_id)
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
