"""A public reply sent from a case's page (the composer: web/composer.py), as the thread's next
email (service/replies.py); what is wrong is shown in the composer, nothing sent."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.ids import ulid_time
from core.models import Reply
from service.errors import Refused
from service.replies import Attachment, FileRefused
from web.actions import AGENTS
from web.composer import (
    CLOSED,
    NOT_TAKEN,
    REPLY_FIELDS,
    REQUEST_KEY,
    SENT,
    STALE,
    TOO_LARGE,
)
from web.forms import new_request_key, problems_of
from web.routes.cases import case_view, show_case
from web.workspace import WorkspaceDep

router = APIRouter()


async def _uploads(form: object, max_bytes: int) -> list[Attachment]:
    files = []
    for part in form.getlist("attachments"):  # type: ignore[attr-defined]
        if isinstance(part, UploadFile) and part.filename:
            # one byte past the limit is enough to refuse it: no upload is read whole
            data = await part.read(max_bytes + 1)
            files.append(Attachment(part.filename, part.content_type or "", data))
    return files


@router.post("/cases/{case_id}/reply")
async def send_reply(request: Request, case_id: str, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, AGENTS)
    form = await ws.checked_form(request)
    sent = {name: str(form.get(name, "")).strip() for name in ("text", "subject", "locale")}
    key = str(form.get(REQUEST_KEY, ""))

    async def again(status_code: int, **problem: object) -> Response:
        kept = {**sent, "request_key": key if ulid_time(key) else new_request_key(), **problem}
        return await show_case(ws, request, person, case_id, status_code, reply=kept)

    if ulid_time(key) is None:
        return await again(400, refusal=STALE)
    service = await ws.connection.get()
    view = await case_view(service, case_id)  # closed since? the update refuses the reply
    if view.status.is_final:
        return await again(409, refusal=CLOSED)
    try:
        reply = Reply(
            text=sent["text"],
            subject=sent["subject"] or None,
            locale=sent["locale"] or None,
            by=person.email,
        )
        files = await _uploads(form, service.attachments.store.max_bytes)
        await service.replies.send(case_id, reply, files, key=key)
    except ValidationError as err:
        return await again(422, problems=problems_of(err, REPLY_FIELDS))
    except FileRefused as err:
        words = TOO_LARGE if err.too_large else NOT_TAKEN
        return await again(422, refusal=words, refusal_args={"name": err.name, "limit": err.limit})
    except Refused as err:
        return await again(409, refusal=str(err))
    back = f"/cases/{quote(case_id)}?{urlencode({'done': SENT})}"
    return RedirectResponse(back, status_code=303)
