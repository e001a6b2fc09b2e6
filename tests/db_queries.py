"""Read helpers over the tables, for the tests."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.tables import Case, CaseEventRow


def get_case(session: Session, case_id: str) -> Case | None:
    return session.get(Case, case_id)


def case_events(session: Session, case_id: str) -> list[CaseEventRow]:
    """The case's stored timeline, oldest first."""
    query = select(CaseEventRow).where(CaseEventRow.case_id == case_id).order_by(CaseEventRow.seq)
    return list(session.scalars(query))
