"""The inbox of the mail that matched nothing (service/inbox.py), for agents and managers: the
messages that wait for a person, the newest first, with what to do with each — attach it to a
case, open a case from it (the new-case form filled in from it), or mark it handled; the
auto-replies in a view of their own. A refusal shows beside the message's form."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.ids import COLLECTIONS, VIANET_INVOICE
from service.attachments import Lost
from service.errors import NotFound, Refused
from service.inbox import HandledAlready, Letter, NoLetter, View
from service.users import Person
from web.actions import AGENTS
from web.i18n import _
from web.pages import choice, page_number
from web.routes.attachments import LOST, VIEWABLE, file_response
from web.workspace import Workspace, WorkspaceDep

router = APIRouter()
log = logging.getLogger("web")
PATH = "/inbox"
VIEWS = {
    View.PERSON: _("Needs a person"),
    View.AUTO_REPLIES: _("Auto-replies"),
    View.ALL: _("All waiting"),
    View.HANDLED: _("Handled"),
}
# why a message waits, as the inbound service recorded it (service.inbound.Outcome)
OUTCOMES = {
    "unmatched": _("Unknown sender: no thread, no known customer"),
    "unreadable": _("Unreadable: not an email that could be read"),
    "refused": _("Its case or invoice would not take it"),
    "other-sender": _("Not from the thread's customer"),
    "unverified": _("Its sender failed the mail server's checks"),
    "noted": _("A reply on a 21Vianet invoice's thread"),
    "auto-reply": _("Auto-reply"),
}
DONE = {"attached": _("Attached to the case."), "handled": _("Marked handled.")}
NO_LETTER = _("There is no such email in the inbox.")
NO_CASE = _("There is no case with this id.")
CASE_ID_MISSING = _("Enter the id of the case to attach it to.")
HANDLED_ALREADY = _("Someone handled this email already. Nothing was changed.")


def workflow_link(workflow_id: str | None) -> str | None:
    """The page of the workflow a message was recorded on, if the workspace has one."""
    if not workflow_id:
        return None
    if workflow_id.startswith(COLLECTIONS):
        return f"/collections/{workflow_id.removeprefix(COLLECTIONS)}"
    if workflow_id.startswith(VIANET_INVOICE):
        return "/payables"
    return None


def new_case_link(letter: Letter) -> str:
    """The new-case form, filled in from the email (web/routes/new_case.py)."""
    return f"/cases/new?{urlencode({'inbox': letter.id})}"


async def _page(
    ws: Workspace,
    request: Request,
    person: Person,
    status_code: int = 200,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    view = choice(View, request.query_params.get("view")) or View.PERSON
    return ws.pages.render(
        request,
        "inbox.html",
        person,
        status_code,
        view=view,
        views=VIEWS,
        outcomes=OUTCOMES,
        listed=await service.inbox.letters(view, page_number(request.query_params.get("page"))),
        waiting=await service.inbox.waiting(),
        done=DONE.get(request.query_params.get("done", "")),
        done_case=request.query_params.get("case"),
        workflow_link=workflow_link,
        new_case_link=new_case_link,
        viewable=VIEWABLE,
        **problem,
    )


@router.get(PATH)
async def inbox_page(request: Request, ws: WorkspaceDep) -> Response:
    return await _page(ws, request, await ws.me(request, AGENTS))


@router.post(PATH + "/{letter_id}/attach")
async def attach(request: Request, letter_id: int, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, AGENTS)
    form = await ws.checked_form(request)
    case_id = str(form.get("case_id", "")).strip()[:64]
    service = await ws.connection.get()
    try:
        if not case_id:
            raise Refused(CASE_ID_MISSING)
        await service.inbox.attach(letter_id, case_id, person.email)
    except Refused as err:
        refusal = HANDLED_ALREADY if isinstance(err, HandledAlready) else str(err)
        return await _refused(ws, request, person, 409, letter_id, refusal, case_id)
    except NotFound as err:
        refusal = NO_LETTER if isinstance(err, NoLetter) else NO_CASE
        return await _refused(ws, request, person, 404, letter_id, refusal, case_id)
    log.info("%s: inbox email %s attached to case %s", person.email, letter_id, case_id)
    return RedirectResponse(
        f"{PATH}?{urlencode({'done': 'attached', 'case': case_id})}", status_code=303
    )


@router.post(PATH + "/{letter_id}/handled")
async def handled(request: Request, letter_id: int, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, AGENTS)
    await ws.checked_form(request)
    service = await ws.connection.get()
    try:
        await service.inbox.handle(letter_id, person.email)
    except NotFound:
        return await _refused(ws, request, person, 404, letter_id, NO_LETTER)
    log.info("%s: inbox email %s marked handled", person.email, letter_id)
    return RedirectResponse(f"{PATH}?done=handled", status_code=303)


@router.get(PATH + "/{letter_id}/files/{sha256}")
async def letter_file(request: Request, letter_id: int, sha256: str, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, AGENTS)
    service = await ws.connection.get()
    try:
        found = await service.inbox.file(letter_id, sha256)
    except Lost as err:
        log.error("%s", err)
        return ws.pages.render(request, "error.html", person, 404, message=LOST)
    except NotFound:
        return ws.pages.render(request, "error.html", person, 404, message=NO_LETTER)
    log.info("%s: attachment %s of inbox email %s", person.email, sha256, letter_id)
    file = found.file
    return file_response(ws, request, file.name, file.content_type, found.path, found.stat)


async def _refused(
    ws: Workspace,
    request: Request,
    person: Person,
    status_code: int,
    letter_id: int,
    refusal: str,
    case_id: str = "",
) -> Response:
    return await _page(
        ws, request, person, status_code, failed=letter_id, refusal=refusal, sent_case=case_id
    )
