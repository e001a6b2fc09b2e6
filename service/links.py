"""Related cases, linked both ways: one row each way in ``case_links``, written and deleted in one
transaction, so neither side can show a link the other does not. Linking needs no workflow (a
closed case may be linked to a new one); each case still running notes it on its timeline. No
letter: the customer is not told. Also the cases a person may pick on a case page: the same
customer's."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from core.models import LinkCase, UnlinkCase
from core.settings import Settings
from db.tables import Case, CaseLink
from service.calls import reading
from service.cases import Cases
from service.errors import Ended, NotFound, Refused
from service.workspace import CaseRow, case_row

LISTED_AT_MOST = 100  # a customer's cases offered on a case page, the latest


class Links:
    def __init__(self, settings: Settings, cases: Cases) -> None:
        self._settings = settings
        self._cases = cases

    async def of(self, case_id: str) -> list[CaseRow]:
        """The cases linked to this one, the latest opened first."""
        return await asyncio.to_thread(self._of, case_id)

    async def of_customer(self, tenant_id: str, *, but: str) -> list[CaseRow]:
        """The customer's cases other than `but`, the latest opened first (a case page's
        pickers: merge into one still open, link to any)."""
        return await asyncio.to_thread(self._of_customer, tenant_id, but)

    async def link(self, case_id: str, action: LinkCase) -> list[CaseRow]:
        """Link the two cases both ways (again: nothing changes); the cases linked to
        `case_id` after it. Refused, naming the field, for the case itself or no such case."""
        await self._check(case_id, action)
        if await asyncio.to_thread(self._write, case_id, action.other, action.by):
            await self._note(case_id, action)
        return await self.of(case_id)

    async def unlink(self, case_id: str, action: UnlinkCase) -> list[CaseRow]:
        """Undo a link, both ways (not linked: nothing changes)."""
        await self._check(case_id, action)
        if await asyncio.to_thread(self._delete, case_id, action.other):
            await self._note(case_id, action)
        return await self.of(case_id)

    async def _check(self, case_id: str, action: LinkCase) -> None:
        if action.other == case_id:
            raise Refused("other: a case cannot be linked to itself; nothing was changed")
        found = await asyncio.to_thread(self._statuses, [case_id, action.other])
        if case_id not in found:
            raise NotFound(f"no case {case_id}")
        if action.other not in found:
            raise Refused(f"other: no case {action.other}; nothing was changed")

    async def _note(self, case_id: str, action: LinkCase) -> None:
        """A line on the timeline of each of the two cases still running (one that ended keeps
        the link all the same: its page reads it from the table)."""
        mirrored = type(action)(other=case_id, by=action.by)
        for one, told in ((case_id, action), (action.other, mirrored)):
            with suppress(Ended, Refused, NotFound):
                await self._cases.act(one, told)

    # ------------------------------------------------------------------ the table

    def _of(self, case_id: str) -> list[CaseRow]:
        with reading(self._settings.database_url) as session:
            rows = session.scalars(
                select(Case)
                .join(CaseLink, CaseLink.other_case_id == Case.case_id)
                .where(CaseLink.case_id == case_id)
                .order_by(Case.opened_at.desc(), Case.case_id)
            ).all()
            return [case_row(row) for row in rows]

    def _of_customer(self, tenant_id: str, but: str) -> list[CaseRow]:
        with reading(self._settings.database_url) as session:
            rows = session.scalars(
                select(Case)
                .where(Case.tenant_id == tenant_id, Case.case_id != but)
                .order_by(Case.opened_at.desc(), Case.case_id)
                .limit(LISTED_AT_MOST)
            ).all()
            return [case_row(row) for row in rows]

    def _statuses(self, case_ids: list[str]) -> dict[str, str]:
        with reading(self._settings.database_url) as session:
            rows = session.execute(
                select(Case.case_id, Case.status).where(Case.case_id.in_(case_ids))
            ).all()
            return {row.case_id: row.status for row in rows}

    def _write(self, case_id: str, other: str, by: str) -> bool:
        """Whether the link is new."""
        now = datetime.now(UTC)
        with reading(self._settings.database_url) as session:
            if session.get(CaseLink, (case_id, other)) is not None:
                return False
            for one, two in ((case_id, other), (other, case_id)):
                session.merge(
                    CaseLink(
                        case_id=one,
                        other_case_id=two,
                        linked_by=by[:320],
                        created_at=now,
                        updated_at=now,
                    )
                )
            try:
                session.commit()
            except IntegrityError:  # the same link made at the same moment: the other wrote it
                session.rollback()
                return False
        return True

    def _delete(self, case_id: str, other: str) -> bool:
        """Whether there was a link to undo."""
        with reading(self._settings.database_url) as session:
            gone = session.execute(
                delete(CaseLink).where(
                    ((CaseLink.case_id == case_id) & (CaseLink.other_case_id == other))
                    | ((CaseLink.case_id == other) & (CaseLink.other_case_id == case_id))
                )
            )
            session.commit()
        return bool(gone.rowcount)  # type: ignore[attr-defined]
