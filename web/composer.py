"""The reply composer of a case's page: a canned reply filled in for the case by `?macro=ID` (which
works without a script), the customer's language chosen by default, files within the attachment
limits, and what went wrong with the last sending. It stands apart from the internal note: it says
the customer reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from core.models import CaseView, Locale
from service import Service
from service.errors import NotFound
from service.macros import Macro
from service.users import Person
from web.actions import AGENTS, Field, Kind
from web.forms import Problem, new_request_key
from web.i18n import _

REQUEST_KEY = "request_key"
SENT = _("reply sent")
REPLY_FIELDS: tuple[Field, ...] = (
    Field("subject", _("Subject"), required=False),
    Field("locale", _("Language"), Kind.SELECT, tuple(x.value for x in Locale)),
    Field("text", _("Reply"), Kind.TEXTAREA),
    Field("attachments", _("Attachments"), required=False),
)
CLOSED = _(
    "This case is closed: no reply can be sent on it. The customer's next email opens a new case."
)
STALE = _("This form is incomplete or too old. Nothing was sent: reload the page.")
TOO_LARGE = _("%(name)s is larger than %(limit)s bytes. Nothing was sent.")
NOT_TAKEN = _("%(name)s is a type of file that is not taken (%(limit)s). Nothing was sent.")


@dataclass
class Composer:
    """What the reply form shows: the case's canned replies, what is filled in, what went wrong."""

    request_key: str
    locale: str
    macros: list[Macro]
    text: str = ""
    subject: str = ""
    macro: int | None = None
    closed: bool = False
    accept: str = ""
    max_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    refusal: str = ""
    refusal_args: dict[str, str] = field(default_factory=dict)


async def composer(
    service: Service, request: Request, person: Person, view: CaseView, **sent: object
) -> Composer | None:
    """The composer of the case's page for an agent (None for anyone else), with the canned reply
    of `?macro=ID` filled in for this case."""
    if not person.may(AGENTS):
        return None
    settings = service.settings
    shown = Composer(
        request_key=new_request_key(),
        locale=view.details.customer.locale.value,
        macros=await service.macros.all(),
        closed=view.status.is_final,
        accept=",".join(settings.attachment_types),
        max_bytes=settings.attachment_max_bytes,
    )
    chosen = request.query_params.get("macro", "")
    if chosen.isdigit():
        try:
            macro = await service.macros.filled(int(chosen), view, person.name)
        except NotFound:
            macro = None
        if macro is not None:
            shown.macro, shown.text, shown.locale = macro.id, macro.text, macro.locale.value
    for name, value in sent.items():
        setattr(shown, name, value)
    return shown
