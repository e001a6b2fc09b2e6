"""The workspace's people, for an admin: the local accounts listed, added, disabled and enabled,
their roles changed, their passwords reset. The same `service.users.Users` calls as the CLI's
`user` commands; disabling ends the account's sessions at once, as a reset does.

A new account's and a reset password is generated and shown once, on the answer to that form
(never kept but as its argon2id hash, never in a URL): the admin hands it over."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.models import Locale
from service.errors import AlreadyExists, NotFound, Refused
from service.users import Account, NewUser, Person, Role, generated_password
from web.actions import ADMINS, Field, Kind
from web.forms import Problem, problems_of, sent_values
from web.i18n import _
from web.workspace import Workspace, WorkspaceDep

router = APIRouter()
PATH = "/admin/users"
USER_FIELDS: tuple[Field, ...] = (
    Field("email", _("Email"), Kind.EMAIL),
    Field("name", _("Name")),
    Field("locale", _("Language"), Kind.SELECT, tuple(x.value for x in Locale)),
)
ROLES_FIELD = Field("roles", _("Roles"))
NO_ACCOUNT = _("no such account. Nothing was changed.")
HAS_ACCOUNT = _("this email has an account already. Nothing was changed.")
NO_ROLE = _("choose at least one role. Nothing was changed.")
NOT_YOURSELF = _(
    "you cannot disable your own account or take your own admin role: another admin can. "
    "Nothing was changed."
)
# what each change is called once done (the page says "Done: …")
DONE = {
    "disable": _("disabled"),
    "enable": _("enabled"),
    "roles": _("roles changed"),
}
CHANGES = {*DONE, "password"}


async def _page(
    ws: Workspace,
    request: Request,
    person: Person,
    status_code: int = 200,
    *,
    problems: list[Problem] | None = None,
    about: str = "",
    sent: dict[str, str] | None = None,
    password: tuple[str, str] | None = None,
) -> Response:
    """The list of accounts and the add form; `about`: the account a problem is about ("" for
    the add form); `password`: (email, password) just generated, shown this once."""
    answer = ws.pages.render(
        request,
        "people.html",
        person,
        status_code,
        accounts=await ws.users.accounts(),
        roles=list(Role),
        fields=USER_FIELDS,
        values=sent or {"locale": Locale.ZH_CN.value},
        sent_roles=(sent or {}).get("roles", "").split(","),
        problems={p.field: p for p in problems or []},
        about=about,
        password=password,
        done=DONE.get(request.query_params.get("done", "")),
    )
    answer.headers["cache-control"] = "no-store"  # a password on it must stay nowhere
    return answer


def _roles(form: Any) -> frozenset[Role]:
    return frozenset(Role(value) for value in form.getlist("roles") if value in set(Role))


@router.get(PATH)
async def people_page(request: Request, ws: WorkspaceDep) -> Response:
    return await _page(ws, request, await ws.me(request, ADMINS))


@router.post(PATH)
async def add_person(request: Request, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, ADMINS)
    form = await ws.checked_form(request)
    sent = sent_values(form, USER_FIELDS)
    roles = _roles(form)
    sent["roles"] = ",".join(sorted(roles))
    password = generated_password().password
    try:
        values = {k: v for k, v in sent.items() if v and k != "roles"}
        new = NewUser(**values, roles=sorted(roles), password=password)
        added = await ws.users.add(new)
    except ValidationError as err:
        problems = problems_of(err, (*USER_FIELDS, ROLES_FIELD))
        return await _page(ws, request, person, 422, problems=problems, sent=sent)
    except AlreadyExists:
        problems = [Problem("email", _("Email"), HAS_ACCOUNT)]
        return await _page(ws, request, person, 409, problems=problems, sent=sent)
    return await _page(ws, request, person, password=_shown(added.email, password))


@router.post(PATH + "/{change}")
async def change_person(request: Request, change: str, ws: WorkspaceDep) -> Response:
    person = await ws.me(request, ADMINS)
    if change not in CHANGES:
        raise NotFound(f"no change {change!r}")
    form = await ws.checked_form(request)
    email = str(form.get("email", "")).strip().lower()
    roles = _roles(form)
    if email == person.email and (
        change == "disable" or (change == "roles" and Role.ADMIN not in roles)
    ):
        problems = [Problem(change, _("Account"), NOT_YOURSELF)]
        return await _page(ws, request, person, 409, problems=problems, about=email)
    try:
        account = await _change(ws, change, email, roles)
    except NotFound:
        problems = [Problem("email", _("Email"), NO_ACCOUNT)]
        return await _page(ws, request, person, 404, problems=problems, about=email)
    except Refused:
        problems = [Problem("roles", _("Roles"), NO_ROLE)]
        return await _page(ws, request, person, 422, problems=problems, about=email)
    if isinstance(account, tuple):
        return await _page(ws, request, person, password=account)
    return RedirectResponse(f"{PATH}?done={change}", status_code=303)


async def _change(
    ws: Workspace, change: str, email: str, roles: frozenset[Role]
) -> Account | tuple[str, str]:
    """One change to an account; a reset answers the generated password to show once."""
    match change:
        case "disable":  # and its sessions end now
            return await ws.users.disable(email)
        case "enable":
            return await ws.users.enable(email)
        case "roles":
            return await ws.users.set_roles(email, roles)
        case "password":
            new = generated_password()
            account = await ws.users.reset_password(email, new)
            return _shown(account.person.email, new.password)
    raise AssertionError(change)  # CHANGES lists every case above


def _shown(email: str, password: SecretStr) -> tuple[str, str]:
    return email, password.get_secret_value()
