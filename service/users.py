"""Who may use the workspace: roles, and the local accounts (`starter.py user add`) for `make run`
and small teams. Passwords are kept as argon2id hashes only; signing in is throttled
(`service.throttle`) and checks at most HASHING_AT_ONCE passwords at once."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import EmailStr, Field, SecretStr, TypeAdapter, ValidationError, field_validator
from sqlalchemy import delete, select

from core.models import Locale
from core.models.shared import Actor, Strict
from core.settings import Settings
from db.tables import WorkspaceSession, WorkspaceUser
from service.calls import reading
from service.errors import AlreadyExists, NotFound, Refused, Throttled
from service.throttle import SignInThrottle

HASHER = PasswordHasher()  # argon2id with the library's (OWASP's) parameters
MIN_PASSWORD = 12
# checked against when the email is unknown, so an unknown address takes as long as a wrong password
_DUMMY_HASH = HASHER.hash("not a password of anyone")
# each check takes 64 MiB and a core for a moment: a flood of sign-ins must not take the process
HASHING_AT_ONCE = 2


class Role(StrEnum):
    AGENT = "agent"  # works cases and collections
    MANAGER = "manager"  # also reassigns, waives, resumes a paused policy (and more: see web/)
    FINANCE = "finance"  # records 21Vianet's invoices and payments, and customers' payments
    ADMIN = "admin"  # manages the workspace's local accounts (add, disable, roles, passwords)


# who may own a case: the people a case is assigned to are picked from these
CASE_OWNERS = frozenset({Role.AGENT, Role.MANAGER})


@dataclass(frozen=True)
class Person:
    """Who is signed in: every action the workspace takes is theirs."""

    email: str
    name: str
    roles: frozenset[Role]
    locale: Locale

    def may(self, allowed: frozenset[Role]) -> bool:
        return bool(self.roles & allowed)


class NewPassword(Strict):
    password: SecretStr

    @field_validator("password")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_PASSWORD:
            raise ValueError(f"at least {MIN_PASSWORD} characters")
        return value


def generated_password() -> NewPassword:
    """A password an admin hands over once (16 characters, 96 random bits)."""
    return NewPassword(password=SecretStr(secrets.token_urlsafe(12)))


class NewUser(NewPassword):
    email: EmailStr
    name: Actor
    roles: list[Role] = Field(min_length=1)
    locale: Locale = Locale.ZH_CN


@dataclass(frozen=True)
class Account:
    """A local account, as `starter.py user list` shows it."""

    person: Person
    disabled: bool
    created_at: datetime


_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


class Users:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._throttle = SignInThrottle(settings)
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    async def add(self, user: NewUser) -> Person:
        """Create a local account; AlreadyExists when the email has one."""
        hashed = HASHER.hash(user.password.get_secret_value())
        return await asyncio.to_thread(self._add, user, hashed)

    def _add(self, user: NewUser, hashed: str) -> Person:
        email = user.email.lower()
        with reading(self._settings.database_url) as session:
            if session.get(WorkspaceUser, email) is not None:
                raise AlreadyExists(f"email: {email} has an account already")
            roles = sorted(set(user.roles))
            session.add(
                WorkspaceUser(
                    email=email,
                    name=user.name,
                    roles=[role.value for role in roles],
                    locale=user.locale.value,
                    password_hash=hashed,
                )
            )
            session.commit()
        return Person(email, user.name, frozenset(roles), user.locale)

    async def accounts(self) -> list[Account]:
        return await asyncio.to_thread(self._accounts)

    def _accounts(self) -> list[Account]:
        with reading(self._settings.database_url) as session:
            rows = session.scalars(select(WorkspaceUser).order_by(WorkspaceUser.email)).all()
            return [_account(row) for row in rows]

    async def case_owners(self) -> list[Person]:
        """The people a case may be assigned to: active accounts of an agent or a manager, by
        name."""
        people = [
            account.person
            for account in await self.accounts()
            if not account.disabled and account.person.may(CASE_OWNERS)
        ]
        return sorted(people, key=lambda person: (person.name, person.email))

    async def case_owner(self, email: str, field: str) -> str:
        """`email` as kept when it is an active agent's or manager's account; Refused naming
        `field` otherwise (a typo must not move a case out of every queue)."""
        wanted = _email(email)
        if any(person.email == wanted for person in await self.case_owners()):
            return wanted
        raise Refused(f"{field}: {wanted} is not an active agent or manager of the workspace")

    async def disable(self, email: str) -> Account:
        """The account signs in no more, and every session of it ends now."""
        return await self._change(email, _disabled(True), end_sessions=True)

    async def enable(self, email: str) -> Account:
        return await self._change(email, _disabled(False))

    async def set_roles(self, email: str, roles: frozenset[Role]) -> Account:
        """The account's roles, from its next request on (its sessions read them each time)."""
        if not roles:
            raise Refused("roles: at least one")

        def assign(row: WorkspaceUser) -> None:
            row.roles = sorted(role.value for role in roles)

        return await self._change(email, assign)

    async def reset_password(self, email: str, new: NewPassword) -> Account:
        """A new password: the account's sessions end, and its failed sign-ins are forgotten."""
        hashed = HASHER.hash(new.password.get_secret_value())

        def replace(row: WorkspaceUser) -> None:
            row.password_hash = hashed

        account = await self._change(email, replace, end_sessions=True)
        await asyncio.to_thread(self._throttle.succeeded, account.person.email)
        return account

    async def _change(
        self, email: str, change: Callable[[WorkspaceUser], None], *, end_sessions: bool = False
    ) -> Account:
        return await asyncio.to_thread(self._changed, _email(email), change, end_sessions)

    def _changed(
        self, email: str, change: Callable[[WorkspaceUser], None], end_sessions: bool
    ) -> Account:
        with reading(self._settings.database_url) as session:
            row = session.get(WorkspaceUser, email)
            if row is None:
                raise NotFound(f"email: {email} has no account")
            change(row)
            if end_sessions:
                session.execute(
                    delete(WorkspaceSession).where(
                        WorkspaceSession.email == email, WorkspaceSession.local
                    )
                )
            session.commit()
            return _account(row)

    async def sign_in(
        self, email: str, password: str, *, address: str, now: datetime
    ) -> Person | None:
        """The person whose email and password these are; None for anything else (one answer for
        an unknown email, a wrong password and a disabled account). Throttled, with nothing
        checked, while the account (known or not) or the address waits after failed sign-ins, or
        while HASHING_AT_ONCE other passwords are being checked."""
        email = _email(email)
        wait = await asyncio.to_thread(self._throttle.wait, email, address, now)
        if wait:
            raise Throttled(wait)
        if self._hashing.locked():
            raise Throttled(1)
        async with self._hashing:
            return await asyncio.to_thread(self._sign_in, email, password, address, now)

    def _sign_in(self, email: str, password: str, address: str, now: datetime) -> Person | None:
        with reading(self._settings.database_url) as session:
            row = session.get(WorkspaceUser, email)
        try:
            HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
            person = _person(row) if row and not row.disabled else None
        except (VerificationError, InvalidHashError):
            person = None
        if person is None:
            self._throttle.failed(email, address, now)
        else:
            self._throttle.succeeded(email)
        return person


def _email(typed: str) -> str:
    """An email as accounts are kept (lower case); what was typed, lowered, when it is not one."""
    typed = typed.strip()[:320]
    try:
        return _EMAIL.validate_python(typed).lower()
    except ValidationError:
        return typed.lower()


def _person(row: WorkspaceUser) -> Person:
    return Person(row.email, row.name, frozenset(Role(r) for r in row.roles), Locale(row.locale))


def _account(row: WorkspaceUser) -> Account:
    return Account(_person(row), row.disabled, row.created_at)


def _disabled(value: bool) -> Callable[[WorkspaceUser], None]:
    def change(row: WorkspaceUser) -> None:
        row.disabled = value

    return change


def roles_from_groups(groups: list[str], settings: Settings) -> frozenset[Role]:
    """The roles an Entra ID sign-in's `groups` claim gives (the group object ids in settings)."""
    mapped = {
        Role.AGENT: settings.oidc_agent_groups,
        Role.MANAGER: settings.oidc_manager_groups,
        Role.FINANCE: settings.oidc_finance_groups,
        Role.ADMIN: settings.oidc_admin_groups,
    }
    return frozenset(role for role, ids in mapped.items() if set(ids) & set(groups))
