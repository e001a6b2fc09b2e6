"""Who may use the workspace: roles, and the local accounts (`starter.py user add`) for `make run`
and small teams. Passwords are kept as argon2id hashes only."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import EmailStr, Field, SecretStr, TypeAdapter, ValidationError, field_validator
from sqlalchemy import func, select

from core.models import Locale
from core.models.shared import Actor, Strict
from core.settings import Settings
from db.tables import WorkspaceUser
from service.calls import reading
from service.errors import AlreadyExists

HASHER = PasswordHasher()  # argon2id with the library's (OWASP's) parameters
MIN_PASSWORD = 12
# checked against when the email is unknown, so an unknown address takes as long as a wrong password
_DUMMY_HASH = HASHER.hash("not a password of anyone")


class Role(StrEnum):
    AGENT = "agent"  # works cases and collections
    MANAGER = "manager"  # also reassigns, waives, resumes a paused policy (and more: see web/)
    FINANCE = "finance"  # records 21Vianet's invoices and payments, and customers' payments


@dataclass(frozen=True)
class Person:
    """Who is signed in: every action the workspace takes is theirs."""

    email: str
    name: str
    roles: frozenset[Role]
    locale: Locale

    def may(self, allowed: frozenset[Role]) -> bool:
        return bool(self.roles & allowed)


class NewUser(Strict):
    email: EmailStr
    name: Actor
    roles: list[Role] = Field(min_length=1)
    locale: Locale = Locale.ZH_CN
    password: SecretStr

    @field_validator("password")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_PASSWORD:
            raise ValueError(f"at least {MIN_PASSWORD} characters")
        return value


_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


class Users:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

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

    async def sign_in(self, email: str, password: str) -> Person | None:
        """The person whose email and password these are; None for anything else (one answer for
        an unknown email and a wrong password)."""
        return await asyncio.to_thread(self._sign_in, email, password)

    def _sign_in(self, email: str, password: str) -> Person | None:
        try:
            email = _EMAIL.validate_python(email.strip()).lower()
        except ValidationError:
            email = ""
        with reading(self._settings.database_url) as session:
            row = session.get(WorkspaceUser, email) if email else None
        try:
            HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        return Person(
            row.email, row.name, frozenset(Role(r) for r in row.roles), Locale(row.locale)
        )

    async def count(self) -> int:
        return await asyncio.to_thread(self._count)

    def _count(self) -> int:
        with reading(self._settings.database_url) as session:
            return session.scalar(select(func.count()).select_from(WorkspaceUser)) or 0


def roles_from_groups(groups: list[str], settings: Settings) -> frozenset[Role]:
    """The roles an Entra ID sign-in's `groups` claim gives (the group object ids in settings)."""
    mapped = {
        Role.AGENT: settings.oidc_agent_groups,
        Role.MANAGER: settings.oidc_manager_groups,
        Role.FINANCE: settings.oidc_finance_groups,
    }
    return frozenset(role for role, ids in mapped.items() if set(ids) & set(groups))
