"""The workspace's templates, rendered in the person's language, and the small readers of a
request's query and form that every page shares."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from core.formatting import day, duration, money, when
from core.models import About, Locale
from service.users import Person
from service.workspace import Queue
from web import actions as registry
from web.actions.attention import REASONS, SUBJECTS, attention_actions, offered
from web.auth import CSRF_FIELD, csrf_token
from web.i18n import _, best_locale, translations
from web.wording import said

HERE = Path(__file__).resolve().parent
QUEUE_LABELS = {
    Queue.MINE: _("Mine"),
    Queue.UNASSIGNED: _("Unassigned"),
    Queue.SLA: _("SLA at risk or breached"),
    Queue.WAITING_ON_CUSTOMER: _("Waiting on the customer"),
    Queue.WAITING_ON_VIANET: _("Waiting on 21Vianet"),
    Queue.NEEDS_ATTENTION: _("Needs attention"),
}


def locale_of(request: Request) -> Locale:
    """The signed-in person's language (their account's, or what they chose), else the browser's."""
    return Locale(
        request.session.get("locale") or best_locale(request.headers.get("accept-language"))
    )


def page_number(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def choice(kind: Any, value: str | None) -> Any:
    try:
        return kind(value) if value else None
    except ValueError:
        return None


def _offered(about: str, attention: Any) -> list[registry.Action]:
    """The 需要处理 panel's actions on a page's workflow, for why it waits."""
    actions = attention_actions(About(about))
    return [actions[name] for name in offered(attention)]


class Pages:
    """The templates, rendered in the person's language."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            extensions=["jinja2.ext.i18n"],
            auto_reload=False,
        )
        self.env.globals.update(
            money=money,
            csrf_field=CSRF_FIELD,
            queues=QUEUE_LABELS,
            agents=registry.AGENTS,
            admins=registry.ADMINS,
            managers=registry.MANAGERS,
            finance=registry.FINANCE,
            attention_reasons=REASONS,
            attention_subjects=SUBJECTS,
            attention_offered=_offered,
            report_readers=registry.MANAGERS | registry.FINANCE,
        )

    def render(
        self,
        request: Request,
        name: str,
        person: Person | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        locale = locale_of(request)
        words = translations(locale)

        def shown(value: datetime) -> str:
            return when(value, locale.value)

        html = self.env.get_template(name).render(
            request=request,
            person=person,
            locale=locale.value,
            csrf=csrf_token(request),
            _=words.gettext,
            gettext=words.gettext,
            ngettext=words.ngettext,
            pgettext=words.pgettext,
            when=lambda value: when(value, locale.value) if value else "",
            said=lambda text: said(text, words.gettext, shown) if text else "",
            day=lambda value: day(value, locale.value) if value else "",
            duration=lambda value: duration(value, locale.value),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)
