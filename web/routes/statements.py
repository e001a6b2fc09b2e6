"""Bank statements (finance): upload one, see what it matched, and the queue of lines that wait,
each with its candidate invoices and a one-click match."""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.errors import NotFound, Refused, ServiceError, Unavailable
from service.statements import QueueLine, StatementAborted, StatementError, StatementSummary
from service.users import Person
from web.actions.base import FINANCE
from web.i18n import _
from web.pages import page_number
from web.workspace import Workspace, WorkspaceDep

log = logging.getLogger("web")
router = APIRouter()
PER_PAGE = 25
MAX_UPLOAD = 64 * 1024 * 1024  # a year of a busy account's lines is a few MB

# what a refused file is, in the reader's language (StatementError.kind)
NOT_TAKEN = {
    "file": _("Upload the bank's export as a .csv or .xlsx file."),
    "encoding": _("The file's text is neither UTF-8 nor GBK: export it again from the bank."),
    "layout": _(
        "No known bank layout fits this file's header row. Finance can map this bank's columns in "
        "the bank layouts file."
    ),
    "unreadable": _("The file cannot be read as a statement."),
}
TOO_BIG = _("The file is larger than 64 MB: split the statement by date.")
STOPPED = _(
    "The import stopped half-way (Temporal or the database did not answer): upload the same file "
    "again; what was recorded is not recorded twice."
)
NOT_MATCHED = _(
    "That invoice cannot take this payment: it is not in collections, has nothing left to pay, "
    "is another customer's than the others, or is in another currency."
)
NOTHING_WAITS = _("This line was matched already.")
# intake.matching.Why and the statuses, as the page says them
WHY = {
    "bill number in the remark": _("bill number in the remark"),
    "known payer account": _("known payer account"),
    "payer name": _("payer name"),
    "mistyped bill number, confirmed by the payer": _(
        "mistyped bill number, confirmed by the payer"
    ),
    "mistyped bill number?": _("mistyped bill number?"),
    "payer name of several customers": _("payer name of several customers"),
    "remark lists bills of several customers": _("remark lists bills of several customers"),
    "known payer with no open bill": _("known payer with no open bill"),
    "no bill number, payer unknown": _("no bill number, payer unknown"),
    "same amount": _("same amount"),
    "the payer's bill": _("the payer's bill"),
    "matched by finance": _("matched by finance"),
    "payment refused": _("payment refused"),
    "not a customer's payment": _("not a customer's payment"),
}
STATUS = {
    "matched": _("matched"),
    "overpaid": _("overpaid"),
    "ambiguous": _("ambiguous"),
    "unmatched": _("unmatched"),
    "refused": _("refused"),
}


@dataclass(frozen=True)
class Listed:
    rows: list[QueueLine]
    page: int
    pages: int
    total: int


async def _page(
    ws: Workspace,
    request: Request,
    person: Person,
    status_code: int = 200,
    page: int = 1,
    summary: StatementSummary | None = None,
    **problem: Any,
) -> Response:
    service = await ws.connection.get()
    rows, total = service.statements.queue(page, PER_PAGE)
    listed = Listed(rows, page, max(1, math.ceil(total / PER_PAGE)), total)
    return ws.pages.render(
        request,
        "statements.html",
        person,
        status_code,
        listed=listed,
        matched=await asyncio.to_thread(service.statements.matched_today),
        summary=summary,
        why=WHY,
        statuses=STATUS,
        done=request.query_params.get("done"),
        **problem,
    )


@router.get("/statements")
async def statements_page(request: Request, ws: WorkspaceDep, page: str | None = None) -> Response:
    person = await ws.me(request, FINANCE)
    return await _page(ws, request, person, page=page_number(page))


@router.post("/statements/upload")
async def upload_statement(request: Request, ws: WorkspaceDep) -> Response:
    """The file is kept in a temporary folder while it is imported, then removed."""
    person = await ws.me(request, FINANCE)
    form = await ws.checked_form(request)
    upload = form.get("statement")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await _page(ws, request, person, 422, refusal=NOT_TAKEN["file"])
    name = Path(upload.filename).name[:200]
    service = await ws.connection.get()
    with tempfile.TemporaryDirectory(prefix="statement-") as folder:
        path = Path(folder) / ("upload" + Path(name).suffix.lower()[:8])
        size = 0
        with path.open("wb") as out:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    return await _page(ws, request, person, 413, refusal=TOO_BIG)
                out.write(chunk)
        try:
            summary = await service.statements.import_file(path, by=person.email, file_name=name)
        except StatementError as err:
            return await _page(ws, request, person, 422, refusal=NOT_TAKEN[err.kind])
        except StatementAborted as err:
            return await _page(ws, request, person, 503, refusal=STOPPED, summary=err.summary)
    log.info("%s: imported statement %s (%s rows)", person.email, name, summary.rows)
    return await _page(ws, request, person, summary=summary)


@router.post("/statements/{line_id}/match")
async def match_line(request: Request, line_id: int, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, FINANCE)
    form = await ws.checked_form(request)
    invoices = [part.strip() for part in str(form.get("invoice_id", "")).split(",")]
    invoices = [invoice for invoice in invoices if invoice][:10]
    service = await ws.connection.get()
    try:
        await service.statements.match_line(line_id, invoices, by=person.email)
    except Unavailable:
        raise
    except Refused as err:
        words = NOTHING_WAITS if "nothing waits" in str(err) else NOT_MATCHED
        return await _page(ws, request, person, 409, refusal=words, failed=line_id)
    except (NotFound, ServiceError):
        return await _page(ws, request, person, 409, refusal=NOT_MATCHED, failed=line_id)
    log.info("%s: matched statement line %s to %s", person.email, line_id, ",".join(invoices))
    return RedirectResponse("/statements?done=matched", status_code=303)


@router.post("/statements/{line_id}/set-aside")
async def set_aside(request: Request, line_id: int, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, FINANCE)
    await ws.checked_form(request)
    service = await ws.connection.get()
    try:
        await asyncio.to_thread(service.statements.set_aside, line_id, by=person.email)
    except (Refused, NotFound):
        return await _page(ws, request, person, 409, refusal=NOTHING_WAITS, failed=line_id)
    log.info("%s: set statement line %s aside", person.email, line_id)
    return RedirectResponse("/statements?done=set-aside", status_code=303)
