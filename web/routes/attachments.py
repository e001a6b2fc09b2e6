"""A case's attachments, for signed-in staff: a file is served only when it is one of that case's
(service/attachments.py), as a download (``Content-Disposition: attachment``) with its declared type
when the settings take that type and it cannot run script (else ``application/octet-stream``),
``nosniff``, never cached, under a CSP that runs nothing (``sandbox``: the file's page has an
origin of its own, no cookie and no script of ours). A PDF or a photo may also be opened in the
browser (``?view=1``, the same headers, ``inline``): Chromium shows both under that CSP. The file
is streamed from the store (FileResponse: 64 KiB at a time)."""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from service.attachments import Lost
from service.errors import NotFound
from web.i18n import _
from web.workspace import Workspace, WorkspaceDep

router = APIRouter()
log = logging.getLogger("web")
# what a browser would run if it showed the file itself: never served as such
ACTIVE = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
    }
)
VIEWABLE = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif"})
FILE_CSP = "default-src 'none'; sandbox"
NOT_LISTED = _("This case has no such attachment.")
LOST = _(
    "The case lists this attachment, but its file is missing from the attachment store "
    "(ATTACHMENTS_DIR): ask an administrator to restore it from the backup."
)
_FALLBACK_UNSAFE = re.compile(r"[^A-Za-z0-9._()+ -]+")


def served_type(declared: str, taken: list[str]) -> str:
    """The Content-Type a file is served with: its email's, when the settings take that type and
    it runs nothing; else ``application/octet-stream``."""
    kind = declared.split(";")[0].strip().lower()
    if kind in {t.lower() for t in taken} and kind not in ACTIVE:
        return kind
    return "application/octet-stream"


def disposition(name: str, *, inline: bool = False) -> str:
    """``attachment`` (or ``inline``) with the name in UTF-8 (RFC 6266/5987: 发票.pdf survives)
    and a plain ASCII one for old clients; never a quote, a line break or a path."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # no path: its last part
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.replace('"', "_").strip(" .") or "attachment"
    stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
    plain_stem = _FALLBACK_UNSAFE.sub("_", _ascii(stem)).strip("_ .")
    plain_suffix = _FALLBACK_UNSAFE.sub("", _ascii(suffix))[:10]
    if not any(c.isalnum() for c in plain_stem):
        plain_stem = "attachment"
    plain = plain_stem + (dot + plain_suffix if dot and plain_suffix else "")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


@router.get("/cases/{case_id}/attachments/{sha256}")
async def attachment(request: Request, case_id: str, sha256: str, ws: WorkspaceDep) -> Response:
    person = await ws.me(request)
    service = await ws.connection.get()
    try:
        found = await service.attachments.file(case_id, sha256)
    except Lost as err:
        log.error("%s", err)
        return ws.pages.render(request, "error.html", person, 404, message=LOST)
    except NotFound:
        return ws.pages.render(request, "error.html", person, 404, message=NOT_LISTED)
    log.info("%s: attachment %s of case %s", person.email, sha256, case_id)
    return file_response(
        ws, request, found.file.name, found.file.content_type, found.path, found.stat
    )


def file_response(
    ws: Workspace, request: Request, name: str, declared: str, path: Path, stat: os.stat_result
) -> FileResponse:
    """A stored file as the workspace serves it: a download (a PDF or a photo may be viewed,
    ``?view=1``) with a safe type, never cached, under a CSP that runs nothing."""
    kind = served_type(declared, ws.settings.attachment_types)
    inline = request.query_params.get("view") == "1" and kind in VIEWABLE
    return FileResponse(
        path,
        stat_result=stat,
        headers={
            "content-type": kind,  # as it is: no charset added, the file's own is unknown
            "content-disposition": disposition(name, inline=inline),
            "content-security-policy": FILE_CSP,
            "x-content-type-options": "nosniff",
            "cache-control": "private, no-store",
        },
    )
