"""What every action is: its form fields, who may take it, how it calls the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from core.formatting import CHINA_STANDARD_TIME
from service import Service
from service.users import Person, Role


class Kind(StrEnum):
    TEXT = "text"
    TEXTAREA = "textarea"
    EMAIL = "email"
    MONEY = "money"
    DATE = "date"
    SELECT = "select"
    PERSON = "person"  # an active agent or manager, picked from the workspace's accounts
    CASE = "case"  # one of the cases the page offers for its action (web/routes/cases.py)


@dataclass(frozen=True)
class Field:
    name: str  # the model's field, and the form's
    label: str
    kind: Kind = Kind.TEXT
    choices: tuple[str, ...] = ()
    required: bool = True


AGENTS = frozenset({Role.AGENT, Role.MANAGER})
MANAGERS = frozenset({Role.MANAGER})
FINANCE = frozenset({Role.FINANCE})
ADMINS = frozenset({Role.ADMIN})

Values = dict[str, Any]
# (what the form gave, blank fields left out; who acts; the service; the case, invoice or 21Vianet
# invoice the page is about) -> the model's fields
Prepare = Callable[[Values, Person, Service, str], Awaitable[Values]]
# (the service, the page's key, the validated model) -> what the service answered
Call = Callable[[Service, str, Any], Awaitable[Any]]


async def _by(values: Values, person: Person, service: Service, key: str) -> Values:
    return {**values, "by": person.email}


async def act_on_case(service: Service, key: str, model: Any) -> Any:
    return await service.cases.act(key, model)


async def act_on_invoice(service: Service, key: str, model: Any) -> Any:
    return await service.collections.act(key, model)


@dataclass(frozen=True)
class Action:
    name: str  # in the URL
    label: str
    roles: frozenset[Role]
    model: type[BaseModel]
    fields: tuple[Field, ...] = ()
    call: Call = act_on_case
    prepare: Prepare = _by
    danger: bool = False  # shown apart: it ends or overrides something
    hint: str = ""


def china_end_of_day(value: str) -> datetime:
    """A date the person picked, as the end of that day in China."""
    day = datetime.strptime(value, "%Y-%m-%d").date()
    return datetime.combine(day, time(23, 59), CHINA_STANDARD_TIME)
