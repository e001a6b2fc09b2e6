"""Shared by the tests of opening a case in the workspace and of its people: a customer the
product knows (a real case opened for it, seen in the projection) and accounts of a test's own."""

from __future__ import annotations

import uuid

from pydantic import SecretStr
from sqlalchemy import select

from core.models import Customer, Locale
from db.session import shared_sessions
from db.tables import Case
from service.users import NewUser, Role, Users
from tests.clock_support import eventually
from tests.workflow_support import open_case
from tests.workspace_support import PASSWORD, Stack


async def known_customer(stack: Stack, name: str) -> Customer:
    """A customer of a case opened through the service, once the projection has it."""
    data = open_case(owner=None)
    customer = data.details.customer.model_copy(
        update={
            "name": name,
            "email": f"finance-{uuid.uuid4().hex[:6]}@customer.example.cn",
            "tenant_id": str(uuid.uuid4()),
            "locale": Locale.EN_US,
        }
    )
    details = data.details.model_copy(update={"customer": customer})
    await stack.service.cases.open(data.model_copy(update={"details": details}))
    await eventually(lambda: projected(stack, data.case_id), "the case in the projection")
    return customer


def projected(stack: Stack, case_id: str) -> bool:
    with shared_sessions(stack.settings.database_url)() as session:
        return session.get(Case, case_id) is not None


def cases_of(stack: Stack, tenant_id: str) -> list[str]:
    """The case ids the projection has for a tenant."""
    with shared_sessions(stack.settings.database_url)() as session:
        query = select(Case.case_id).where(Case.tenant_id == tenant_id)
        return list(session.scalars(query))


async def account(stack: Stack, *roles: Role, name: str = "") -> str:
    """A local account of this test's own, with the shared test password."""
    email = f"person-{uuid.uuid4().hex[:8]}@partner.example.cn"
    new = NewUser(
        email=email, name=name or email[:15], roles=list(roles), password=SecretStr(PASSWORD)
    )
    await Users(stack.settings).add(new)
    return email


__all__ = ["account", "cases_of", "known_customer", "projected"]
