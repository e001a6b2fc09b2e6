"""Canned replies (macros) as ``reply_macros`` keeps them: managers list, add, edit and delete
them; an agent's reply composer fills one in for a case (core/macros.py: the placeholders)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.formatting import localized_money
from core.macros import MacroForm, fill
from core.models import CaseView, Locale
from core.settings import Settings
from db.tables import ReplyMacro, table
from service.calls import reading
from service.errors import AlreadyExists, NotFound

MACROS = table(ReplyMacro)


@dataclass(frozen=True)
class Macro:
    id: int
    name: str
    locale: Locale
    text: str
    updated_by: str
    updated_at: datetime


def case_values(view: CaseView, agent_name: str) -> dict[str, str]:
    """What each placeholder stands for on this case, written as the customer's language does."""
    details = view.details
    return {
        "case_id": view.case_id,
        "customer_name": details.customer.name,
        "invoice_number": details.invoice_id or "",
        "amount": localized_money(
            details.disputed_amount, details.currency, details.customer.locale.value
        ),
        "agent_name": agent_name,
    }


class Macros:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def all(self, locale: Locale | None = None) -> list[Macro]:
        """Every macro (of one language), by language and name."""
        return await asyncio.to_thread(self._list, locale)

    async def get(self, macro_id: int) -> Macro:
        found = [m for m in await self.all() if m.id == macro_id]
        if not found:
            raise NotFound(f"no canned reply {macro_id}")
        return found[0]

    async def add(self, form: MacroForm, by: str) -> Macro:
        """AlreadyExists when the language has a macro of that name."""
        return await asyncio.to_thread(self._save, None, form, by)

    async def edit(self, macro_id: int, form: MacroForm, by: str) -> Macro:
        return await asyncio.to_thread(self._save, macro_id, form, by)

    async def delete(self, macro_id: int) -> None:
        await asyncio.to_thread(self._delete, macro_id)

    async def filled(self, macro_id: int, view: CaseView, agent_name: str) -> Macro:
        """The macro with the case's fields in place of its placeholders."""
        macro = await self.get(macro_id)
        text = fill(macro.text, case_values(view, agent_name))
        return Macro(macro.id, macro.name, macro.locale, text, macro.updated_by, macro.updated_at)

    def _list(self, locale: Locale | None) -> list[Macro]:
        query = select(MACROS).order_by(MACROS.c.locale, MACROS.c.name)
        if locale is not None:
            query = query.where(MACROS.c.locale == locale.value)
        with reading(self._settings.database_url) as session:
            rows = session.execute(query).all()
        return [
            Macro(row.id, row.name, Locale(row.locale), row.text, row.updated_by, row.updated_at)
            for row in rows
        ]

    def _save(self, macro_id: int | None, form: MacroForm, by: str) -> Macro:
        now = datetime.now(UTC)
        values = {"name": form.name, "locale": form.locale.value, "text": form.text}
        with reading(self._settings.database_url) as session:
            try:
                if macro_id is None:
                    added = session.execute(
                        insert(MACROS).values(
                            **values, updated_by=by, created_at=now, updated_at=now
                        )
                    )
                    key = cast(CursorResult[Any], added).inserted_primary_key
                    assert key is not None
                    macro_id = int(key[0])
                else:
                    changed = cast(
                        CursorResult[Any],
                        session.execute(
                            update(MACROS)
                            .where(MACROS.c.id == macro_id)
                            .values(**values, updated_by=by, updated_at=now)
                        ),
                    )
                    if not changed.rowcount:
                        raise NotFound(f"no canned reply {macro_id}")
                session.commit()
            except IntegrityError:
                raise AlreadyExists(
                    f"name: a canned reply named {form.name!r} in {form.locale.value} exists"
                ) from None
        return Macro(macro_id, form.name, form.locale, form.text, by, now)

    def _delete(self, macro_id: int) -> None:
        with reading(self._settings.database_url) as session:
            gone = cast(
                CursorResult[Any], session.execute(delete(MACROS).where(MACROS.c.id == macro_id))
            )
            session.commit()
        if not gone.rowcount:
            raise NotFound(f"no canned reply {macro_id}")
