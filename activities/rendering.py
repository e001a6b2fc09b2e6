"""Render the emails and the 21Vianet service request from the Jinja templates under ``templates/``.

Emails live in ``templates/email/<locale>/<name>/{subject.txt,body.txt,body.html}``; the 21Vianet
request in ``templates/vianet/``. HTML is autoescaped, text is not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from core.alerts import AlertKind
from core.formatting import day, duration, localized_money, timestamp, when
from core.models import DEMO_LETTERHEAD, About, EmailMessage, EmailTemplate, Letterhead, Locale
from core.ratings import SCORES, RatingLinks

_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class RenderedAlert:
    title: str
    text: str  # markdown, as the robots take it


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _tidy(text: str) -> str:
    # conditional sections leave runs of blank lines behind; a reader wants at most one
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


class TemplateRenderer:
    """One Jinja environment over the templates directory; safe to share between threads."""

    def __init__(
        self,
        templates_dir: Path,
        letterhead: Letterhead = DEMO_LETTERHEAD,
        rating_links: RatingLinks | None = None,
    ) -> None:
        self.rating_links = rating_links  # the closing letter's, one per score (or none)
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            # only .html is escaped: text parts and the 21Vianet request keep the customer's words
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            money=localized_money,
            when=when,
            day=day,
            duration=duration,
            timestamp=timestamp,
            md=markdown_text,
        )
        # every letter's signature and payment instructions
        self.env.globals["partner"] = letterhead

    def render(
        self, template: EmailTemplate, locale: Locale, context: Mapping[str, Any]
    ) -> RenderedEmail:
        """``context``: ``extra`` (the email's data as text) and ``case``, ``collections`` or
        ``vianet_invoice``, whichever the email is about."""
        about = template.about
        if about is not None and context.get(about.value) is None:
            raise ValueError(f"email {template.value} is rendered with {about.value}")
        # every name is always defined, so the shared layouts can ask which one this email has
        values = {
            **{subject.value: None for subject in About},
            "extra": {},
            "ratings": [],
            "links": {},
            **context,
            "locale": locale.value,
            "template": template.value,
        }
        folder = f"email/{locale.value}/{template.value}"
        subject_line = self.env.get_template(f"{folder}/subject.txt").render(values)
        return RenderedEmail(
            subject=" ".join(subject_line.split()),
            text=_tidy(self.env.get_template(f"{folder}/body.txt").render(values)),
            html=self.env.get_template(f"{folder}/body.html").render(values),
        )

    def render_message(
        self, message: EmailMessage, links: Mapping[str, str] | None = None
    ) -> RenderedEmail:
        """`links`: a staff email's workspace pages (activities/alerts.py `links`)."""
        context = {**_context(message), "ratings": self._ratings(message), "links": links or {}}
        return self.render(message.template, message.locale, context)

    def render_alert(
        self, kind: AlertKind, message: EmailMessage, locale: Locale, links: Mapping[str, str]
    ) -> RenderedAlert:
        """A staff email's alert for the group robots (``templates/alert/<locale>/<kind>.md``),
        from the email's own data and view: its first line is the title, the rest the text."""
        values = {
            **{subject.value: None for subject in About},
            **_context(message),
            "links": links,
            "locale": locale.value,
            "template": message.template.value,
        }
        rendered = self.env.get_template(f"alert/{locale.value}/{kind.value}.md").render(values)
        title, _, text = _tidy(rendered).partition("\n")
        return RenderedAlert(title=title.strip(), text=text.strip())

    def _ratings(self, message: EmailMessage) -> list[tuple[int, str]]:
        """(score, link) for the closing letter's rating question; none in any other letter."""
        links = self.rating_links
        if (
            links is None
            or message.case is None
            or message.template is not EmailTemplate.CASE_CLOSED
        ):
            return []
        return [(score, links.url(message.case.case_id, score)) for score in SCORES]

    def render_text(self, path: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(path).render(dict(context))


def _context(message: EmailMessage) -> dict[str, Any]:
    """What an email's templates read of it: its view, and its data as text (``extra``)."""
    return {
        "case": message.case,
        "collections": message.collections,
        "vianet_invoice": message.vianet_invoice,
        "account": message.account,
        "extra": {**message.data.extra(), **message.data.lists()},
        # a consolidated notice lists the customer's other invoices of the same kind
        "also": getattr(message.data, "also", []),
    }


def markdown_text(value: object) -> str:
    """Text from data inside a robot's markdown: what would become markup (a link, bold, a tag)
    is shown as a look-alike character instead."""
    return str(value).translate(_MARKDOWN_LOOKALIKES)


_MARKDOWN_LOOKALIKES = str.maketrans(
    {"[": "［", "]": "］", "<": "‹", ">": "›", "*": "＊", "`": "ˋ"}
)
