"""`user`: the local accounts of the web workspace (the database only, no Temporal)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from cli.common import build, console, fail, plain, settings_or_exit, sub_app
from core.formatting import utc_minute
from service.errors import ServiceError
from service.users import Account, NewPassword, NewUser, Role, Users

T = TypeVar("T")
users_app = sub_app("Local accounts of the web workspace (`make run`, small teams).")
EmailArg = Annotated[str, typer.Argument(help="The account's email.")]
RolesOpt = Annotated[
    list[Role],
    typer.Option("--role", help="agent, manager, finance or admin (repeat for several)."),
]
PasswordOpt = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="WORKSPACE_PASSWORD",
        help="At least 12 characters; asked for twice when not given (or $WORKSPACE_PASSWORD).",
    ),
]


def _accounts(action: Callable[[Users], Coroutine[Any, Any, T]]) -> T:
    """One change to the local accounts; a refusal is exit 1."""
    try:
        return asyncio.run(action(Users(settings_or_exit())))
    except ServiceError as err:
        fail(str(err))


def _account_line(verb: str, account: Account) -> None:
    roles = ", ".join(sorted(account.person.roles))
    state = " — disabled" if account.disabled else ""
    console.print(Text.assemble(f"{verb} ", plain(account.person.email), f" ({roles}){state}"))


@users_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="Their email: what they sign in with and act as.")],
    name: Annotated[str, typer.Option(help="Their name, as the workspace shows it.")],
    role: RolesOpt,
    locale: Annotated[str, typer.Option(help="Their language: zh-CN or en-US.")] = "zh-CN",
    password: PasswordOpt = "",
) -> None:
    """Create a local account of the workspace; its password is kept as an argon2id hash.

    Exit code 2: bad input; 1: the email has an account already."""
    user = build(NewUser, email=email, name=name, roles=role, locale=locale, password=password)
    person = _accounts(lambda users: users.add(user))
    roles = ", ".join(sorted(person.roles))
    console.print(Text.assemble("added ", plain(person.email), f" ({roles})"))


@users_app.command("list")
def user_list() -> None:
    """The local accounts: email, name, roles, language, and whether each is disabled."""
    table = Table()
    for header in ("Email", "Name", "Roles"):
        table.add_column(header, overflow="fold")
    for header in ("Language", "State", "Since (UTC)"):
        table.add_column(header, no_wrap=True)
    for account in _accounts(lambda users: users.accounts()):
        person = account.person
        table.add_row(
            plain(person.email),
            plain(person.name),
            ", ".join(sorted(person.roles)),
            person.locale.value,
            "disabled" if account.disabled else "active",
            utc_minute(account.created_at),
        )
    console.print(table)


@users_app.command("disable")
def user_disable(email: EmailArg) -> None:
    """The account signs in no more, and each of its sessions ends now (exit 1: no such account)."""
    _account_line("disabled", _accounts(lambda users: users.disable(email)))


@users_app.command("enable")
def user_enable(email: EmailArg) -> None:
    """A disabled account may sign in again (exit 1: no such account)."""
    _account_line("enabled", _accounts(lambda users: users.enable(email)))


@users_app.command("role")
def user_role(email: EmailArg, role: RolesOpt) -> None:
    """Set the account's roles: its sessions have them from their next request on."""
    _account_line("roles set:", _accounts(lambda users: users.set_roles(email, frozenset(role))))


@users_app.command("reset-password")
def user_reset_password(email: EmailArg, password: PasswordOpt = "") -> None:
    """A new password for the account: its sessions end, its failed sign-ins are forgotten.

    Exit code 2: too short; 1: no such account."""
    new = build(NewPassword, password=password)
    _account_line("password reset:", _accounts(lambda users: users.reset_password(email, new)))
