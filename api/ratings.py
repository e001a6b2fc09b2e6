"""The closing letter's rating links, for customers: no sign-in, the token in the link is all.

``GET /r/<token>`` shows the score the link stands for, in the customer's language, with one
button; ``POST`` to the same address keeps it as the case's rating and thanks them. The GET
changes nothing: mail systems open every link of a letter to scan it (Outlook's Safe Links, QQ
Mail), and five scanned links must not rate a case. The token (core/ratings.py) binds the case
and the score under EMAIL_THREAD_SECRET: an altered or forged one is refused with 404 and changes
nothing. Clicking again keeps the latest score; the same link twice is one rating.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from core.models import Locale
from core.ratings import PATH
from core.settings import Settings
from service.errors import NotFound, Unavailable
from service.ratings import Channel, Ratings

log = logging.getLogger("api.ratings")
# the token travels in the address: no page it leads to, and no cache, keeps it
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


def router(settings: Settings) -> APIRouter:
    """The rating pages; each answers 404 while API_PUBLIC_URL or EMAIL_THREAD_SECRET is unset
    (the letters then carry no links)."""
    links = settings.rating_links()
    ratings = Ratings(settings)
    pages = Environment(
        loader=FileSystemLoader(Path(settings.templates_dir) / "rating"),
        autoescape=select_autoescape(enabled_extensions=("html",)),
        undefined=StrictUndefined,
    )
    routes = APIRouter(include_in_schema=False)

    def page(state: str, status: int, locale: str = "", **values: object) -> HTMLResponse:
        """A page in the customer's language; one that cannot be told (a link not ours) in
        Chinese and English both."""
        name = f"{locale}.html" if locale in set(Locale) else "unknown.html"
        text = pages.get_template(name).render(state=state, **values)
        return HTMLResponse(text, status, headers=HEADERS)

    async def verified(token: str) -> tuple[str, int, str] | HTMLResponse:
        found = links.verified(token) if links is not None and len(token) <= 200 else None
        if found is None:
            return page("invalid", 404)
        case_id, score = found
        try:
            return case_id, score, await ratings.locale_of(case_id)
        except NotFound:
            return page("invalid", 404)
        except Unavailable:
            return page("unavailable", 503)

    @routes.get(PATH + "{token}")
    async def ask(token: str) -> HTMLResponse:
        found = await verified(token)
        if isinstance(found, HTMLResponse):
            return found
        case_id, score, locale = found
        return page("ask", 200, locale, case_id=case_id, score=score)

    @routes.post(PATH + "{token}")
    async def rate(token: str) -> HTMLResponse:
        found = await verified(token)
        if isinstance(found, HTMLResponse):
            return found
        case_id, score, locale = found
        try:
            await ratings.record(case_id, score, Channel.LINK, token, datetime.now(UTC))
        except NotFound:
            return page("invalid", 404)
        except Unavailable:
            return page("unavailable", 503, locale)
        log.info("case %s rated %d by its link", case_id, score)
        return page("thanks", 200, locale, case_id=case_id, score=score)

    return routes
