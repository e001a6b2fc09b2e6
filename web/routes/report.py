"""The managers' report as a page (managers and finance): the tables and charts of `starter.py
report`, computed by `reporting` once, in the reader's language; the charts drawn by plotly.js
from their JSON, loaded as a script file (the workspace allows no inline script)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from web import actions as registry
from web.i18n import translations
from web.pages import locale_of
from web.workspace import WorkspaceDep

router = APIRouter()
READERS = registry.MANAGERS | registry.FINANCE
PERIODS = (7, 30, 90, 0)  # days; 0: all time
# plotly.js sets the charts' styles inline: this page alone allows inline styles (no script)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@router.get("/report")
async def report(
    request: Request, ws: WorkspaceDep, days: str = "30", currency: str = "CNY"
) -> Response:
    from service.reports import Words, report_page  # plotly: loaded by the page that draws

    person = await ws.me(request, READERS)
    period = int(days) if days.isdigit() and int(days) in PERIODS else 30
    currency = currency if re.fullmatch(r"[A-Z]{3}", currency) else "CNY"
    locale = locale_of(request)
    words = Words(translations(locale).gettext, locale.value)
    page = await asyncio.to_thread(
        report_page,
        ws.settings,
        now=datetime.now(UTC),
        days=period,
        currency=currency,
        words=words,
    )
    answer = ws.pages.render(
        request, "report.html", person, page=page, period=period, periods=PERIODS
    )
    answer.headers["content-security-policy"] = CSP
    return answer


@router.get("/report/plotly.js")
async def plotly(request: Request, ws: WorkspaceDep) -> Response:
    from service.reports import plotly_js

    await ws.me(request, READERS)
    return Response(
        plotly_js(),
        media_type="text/javascript",
        headers={"cache-control": "private, max-age=86400"},
    )
