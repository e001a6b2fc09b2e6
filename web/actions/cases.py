"""The actions of a case page."""

from __future__ import annotations

from core.models import (
    AddNote,
    Assign,
    Confirm,
    CustomerReply,
    Escalate,
    LinkCase,
    Locale,
    MergeCase,
    Outcome,
    Reopen,
    RequestInfo,
    Resolve,
    Severity,
    UnlinkCase,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Withdraw,
)
from service import Service
from service.errors import Refused
from service.users import Person, Role
from web.actions.base import AGENTS, MANAGERS, Action, Field, Kind, Values
from web.actions.fapiao import REQUEST_FAPIAO
from web.i18n import _


async def _take(values: Values, person: Person, service: Service, case_id: str) -> Values:
    """An agent takes an unassigned case; giving a case someone owns to another is a manager's."""
    view = await service.cases.show(case_id)
    if view.owner not in (None, person.email) and Role.MANAGER not in person.roles:
        raise Refused(f"case {case_id} is {view.owner}'s: a manager reassigns it")
    return {"agent": person.email, "by": person.email}


async def _assign(values: Values, person: Person, service: Service, case_id: str) -> Values:
    """A case goes only to an active agent's or manager's account (a typo moved a case out of
    every queue and mailed a mailbox that does not exist)."""
    try:
        agent = await service.users.case_owner(str(values.get("agent", "")), "agent")
    except Refused:
        raise Refused(ASSIGN_REFUSED) from None
    return {"agent": agent, "by": person.email}


async def _merge(service: Service, case_id: str, model: MergeCase) -> object:
    return await service.cases.merge(case_id, model)


async def _link(service: Service, case_id: str, model: LinkCase) -> object:
    return await service.links.link(case_id, model)


async def _unlink(service: Service, case_id: str, model: UnlinkCase) -> object:
    return await service.links.unlink(case_id, model)


# the page translates it (the refusal names the field)
ASSIGN_REFUSED = _(
    "agent: not an active agent or manager of the workspace; pick one from the list. "
    "Nothing was changed."
)


CASE_ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("take", _("Take this case"), AGENTS, Assign, prepare=_take),
        Action(
            "note",
            _("Internal note (staff only)"),
            AGENTS,
            AddNote,
            (Field("text", _("Note"), Kind.TEXTAREA),),
            hint=_("Staff see it on the timeline; the customer never does."),
        ),
        Action(
            "request-info",
            _("Ask the customer"),
            AGENTS,
            RequestInfo,
            (Field("question", _("Question"), Kind.TEXTAREA),),
            hint=_("The customer is emailed; the SLA clocks pause until they answer."),
        ),
        Action(
            "customer-reply",
            _("Record the customer's reply"),
            AGENTS,
            CustomerReply,
            (Field("text", _("What the customer said"), Kind.TEXTAREA),),
        ),
        Action(
            "escalate",
            _("Escalate to 21Vianet"),
            AGENTS,
            Escalate,
            (
                Field("reason", _("Reason"), Kind.TEXTAREA),
                Field("severity", _("Severity"), Kind.SELECT, tuple(s.value for s in Severity)),
            ),
        ),
        Action(
            "vianet-ticket",
            _("Record the 21Vianet ticket number"),
            AGENTS,
            VianetTicket,
            (Field("ticket_number", _("Ticket number")),),
        ),
        Action(
            "vianet-response",
            _("Record 21Vianet's answer"),
            AGENTS,
            VianetResponse,
            (Field("text", _("Answer"), Kind.TEXTAREA),),
        ),
        Action(
            "resolve",
            _("Resolve"),
            AGENTS,
            Resolve,
            (
                Field("outcome", _("Outcome"), Kind.SELECT, tuple(o.value for o in Outcome)),
                Field("summary", _("Summary for the customer"), Kind.TEXTAREA),
                Field("credit_amount", _("Credit or refund amount"), Kind.MONEY, required=False),
            ),
        ),
        REQUEST_FAPIAO,
        Action(
            "contact",
            _("Correct the customer's email"),
            AGENTS,
            UpdateContact,
            (
                Field("email", _("Email"), Kind.EMAIL),
                Field("locale", _("Language"), Kind.SELECT, tuple(x.value for x in Locale), False),
            ),
        ),
        Action(
            "confirm",
            _("The customer confirmed the resolution"),
            AGENTS,
            Confirm,
            hint=_("Closes the case with the final email."),
        ),
        Action(
            "reopen", _("Reopen"), AGENTS, Reopen, (Field("reason", _("Reason"), Kind.TEXTAREA),)
        ),
        Action(
            "link",
            _("Link to…"),
            AGENTS,
            LinkCase,
            (Field("other", _("Case"), Kind.CASE),),
            call=_link,
            hint=_("Related cases: each shows the other; the customer is not told."),
        ),
        Action(
            "unlink",
            _("Unlink"),
            AGENTS,
            UnlinkCase,
            (Field("other", _("Case"), Kind.CASE),),
            call=_unlink,
        ),
        Action(
            "merge",
            _("Merge into…"),
            AGENTS,
            MergeCase,
            (Field("into", _("Case"), Kind.CASE),),
            call=_merge,
            danger=True,
            hint=_(
                "For a duplicate: this case closes, and the customer gets one email saying "
                "the request continues under the case you pick (the same customer's, still "
                "open), where its emails, files and timeline are shown."
            ),
        ),
        Action(
            "withdraw",
            _("Withdraw the case"),
            AGENTS,
            Withdraw,
            (Field("reason", _("Reason"), Kind.TEXTAREA),),
            danger=True,
        ),
        Action(
            "assign",
            _("Reassign"),
            MANAGERS,
            Assign,
            (Field("agent", _("Agent"), Kind.PERSON),),
            prepare=_assign,
        ),
    )
}
