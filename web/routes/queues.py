"""The agents' queues of cases (read from the database projection) and the home page."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.models import Category, Priority
from service.errors import NotFound
from service.users import Person
from service.workspace import PAGE_SIZE, CaseFilter, Page, Queue
from web import actions as registry
from web.pages import choice, page_number
from web.workspace import Workspace, WorkspaceDep

router = APIRouter()


@router.get("/")
async def home(request: Request, ws: WorkspaceDep) -> Response:
    person = await ws.me(request)
    if person.may(registry.AGENTS):
        return RedirectResponse("/queues/mine", status_code=303)
    if person.roles == registry.ADMINS:  # an admin only: the people are their work
        return RedirectResponse("/admin/users", status_code=303)
    return RedirectResponse("/payables", status_code=303)


@router.get("/queues/{queue}")
async def queue_page(
    request: Request,
    queue: str,
    ws: WorkspaceDep,
    priority: str | None = None,
    category: str | None = None,
    q: str = "",
    page: str | None = None,
) -> Response:
    person = await ws.me(request)
    chosen = choice(Queue, queue)
    if chosen is None:
        raise NotFound(f"no queue {queue!r}")
    service = await ws.connection.get()
    if chosen is Queue.NEEDS_ATTENTION:
        return await _needs_attention(request, ws, person, q, page)
    filters = CaseFilter(choice(Priority, priority), choice(Category, category), q.strip()[:200])
    listed = await service.workspace.cases(
        chosen, person.email, filters, page_number(page), now=datetime.now(UTC)
    )
    query = {k: v for k, v in (("priority", priority), ("category", category), ("q", q)) if v}
    return ws.pages.render(
        request,
        "queue.html",
        person,
        queue=chosen,
        listed=listed,
        filters=filters,
        query=urlencode(query),
        priorities=[p.value for p in Priority],
        categories=[c.value for c in Category],
    )


async def _needs_attention(
    request: Request, ws: Workspace, person: Person, q: str, page: str | None
) -> Response:
    """需要处理: every workflow that waits for a person (cases, invoices, accounts, 21Vianet
    invoices), why, and the page where they act; and the inbox's emails no one has seen to."""
    service = await ws.connection.get()
    found = await service.list_workflows("needs-attention", limit=1000)
    text = q.strip()[:200]
    rows = await service.workspace.waiting(found, text)
    number = min(page_number(page), max(1, -(-len(rows) // PAGE_SIZE)))
    shown = rows[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    return ws.pages.render(
        request,
        "queue.html",
        person,
        queue=Queue.NEEDS_ATTENTION,
        waiting=Page(shown, len(rows), number),
        filters=CaseFilter(text=text),
        query=urlencode({"q": q} if q else {}),
        inbox_waiting=await service.inbox.waiting(),
    )
