"""Canned replies (macros), for managers: listed, added, edited and deleted (service/macros.py);
agents pick them in a case's reply composer. An unknown placeholder is refused, naming it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.macros import PLACEHOLDERS, MacroForm, unknown_placeholders
from core.models import Locale
from service.errors import AlreadyExists, NotFound
from service.users import Person
from web.actions import MANAGERS, Field, Kind
from web.forms import problems_of, sent_values
from web.i18n import _
from web.workspace import Workspace, WorkspaceDep

router = APIRouter()
PATH = "/macros"
MACRO_FIELDS: tuple[Field, ...] = (
    Field("name", _("Name")),
    Field("locale", _("Language"), Kind.SELECT, tuple(x.value for x in Locale)),
    Field("text", _("Text"), Kind.TEXTAREA),
)
UNKNOWN = _(
    "text: unknown placeholders %(names)s; the known ones are %(known)s. Nothing was saved."
)
EXISTS = _("name: this language has a canned reply of this name already. Nothing was saved.")
DONE = {"add": _("canned reply added"), "edit": _("canned reply saved"), "delete": _("deleted")}


async def _page(
    ws: Workspace,
    request: Request,
    person: Person,
    status_code: int = 200,
    *,
    editing: int | None = None,
    sent: dict[str, str] | None = None,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    macros = await service.macros.all()
    if editing is not None and sent is None:
        found = [m for m in macros if m.id == editing]
        if not found:
            raise NotFound(f"no canned reply {editing}")
        sent = {"name": found[0].name, "locale": found[0].locale.value, "text": found[0].text}
    return ws.pages.render(
        request,
        "macros.html",
        person,
        status_code,
        macros=macros,
        fields=MACRO_FIELDS,
        placeholders=PLACEHOLDERS,
        editing=editing,
        sent=sent or {"locale": person.locale.value},
        done=request.query_params.get("done"),
        **problem,
    )


@router.get(PATH)
async def macros_page(request: Request, ws: WorkspaceDep) -> Response:
    return await _page(ws, request, await ws.me(request, MANAGERS))


@router.get(PATH + "/{macro_id}")
async def macro_page(request: Request, macro_id: int, ws: WorkspaceDep) -> Response:
    return await _page(ws, request, await ws.me(request, MANAGERS), editing=macro_id)


@router.post(PATH)
async def add_macro(request: Request, ws: WorkspaceDep) -> Response:
    return await _save(request, ws, None)


@router.post(PATH + "/{macro_id}")
async def edit_macro(request: Request, macro_id: int, ws: WorkspaceDep) -> Response:
    return await _save(request, ws, macro_id)


@router.post(PATH + "/{macro_id}/delete")
async def delete_macro(request: Request, macro_id: int, ws: WorkspaceDep) -> Response:
    await ws.me(request, MANAGERS)
    await ws.checked_form(request)
    service = await ws.connection.get()
    await service.macros.delete(macro_id)
    return RedirectResponse(f"{PATH}?{urlencode({'done': DONE['delete']})}", status_code=303)


async def _save(request: Request, ws: Workspace, macro_id: int | None) -> Response:
    person = await ws.me(request, MANAGERS)
    form = await ws.checked_form(request)
    sent = sent_values(form, MACRO_FIELDS)
    # each unknown placeholder named, before the model's own checks of the fields
    unknown = unknown_placeholders(sent["text"])
    if unknown:
        names = ", ".join(f"{{{name}}}" for name in unknown)
        known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        args = {"names": names, "known": known}
        return await _page(
            ws, request, person, 422, editing=macro_id, sent=sent, refusal=UNKNOWN, args=args
        )
    service = await ws.connection.get()
    try:
        checked = MacroForm(**{name: value for name, value in sent.items() if value})
        if macro_id is None:
            await service.macros.add(checked, person.email)
        else:
            await service.macros.edit(macro_id, checked, person.email)
    except ValidationError as err:
        problems = problems_of(err, MACRO_FIELDS)
        return await _page(ws, request, person, 422, editing=macro_id, sent=sent, problems=problems)
    except AlreadyExists:
        return await _page(ws, request, person, 409, editing=macro_id, sent=sent, refusal=EXISTS)
    done = DONE["add" if macro_id is None else "edit"]
    return RedirectResponse(f"{PATH}?{urlencode({'done': done})}", status_code=303)
