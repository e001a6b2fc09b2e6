"""Keeps the ``cases`` row and the append-only ``case_events`` log in step with the workflow."""

from __future__ import annotations

from enum import Enum
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from core.models import CaseEvent, CaseRecord, PersistCase
from db.tables import Case, CaseEventRow


class CaseStoreActivities:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    @activity.defn
    def persist_case(self, data: PersistCase) -> None:
        """Upsert the case row and append the events it has not stored yet; safe to repeat."""
        try:
            self._persist(data)
        except IntegrityError:
            # a concurrent attempt inserted the row or the events first; a second pass skips them
            self._persist(data)

    def _persist(self, data: PersistCase) -> None:
        with self._session_factory.begin() as session:
            if session.get_bind().dialect.name == "sqlite":
                # take SQLite's write lock before reading, as FOR UPDATE does on PostgreSQL
                session.execute(text("BEGIN IMMEDIATE"))
            case = session.get(Case, data.record.case_id, with_for_update=True)
            if case is None:
                case = Case(last_event_seq=0)
                session.add(case)
            # the row is last-writer-wins; the event log only grows and last_event_seq never drops
            for column, value in _columns(data.record).items():
                setattr(case, column, value)
            session.flush()  # the row must exist before its events reference it
            new_events = [event for event in data.events if event.seq > case.last_event_seq]
            session.add_all(_event_row(case.case_id, event) for event in new_events)
            case.last_event_seq = max([case.last_event_seq, *(event.seq for event in new_events)])


def _columns(record: CaseRecord) -> dict[str, Any]:
    """The ``cases`` columns for a record: same names, enums as their string values."""
    return {
        name: value.value if isinstance(value, Enum) else value
        for name, value in record.model_dump().items()
    }


def _event_row(case_id: str, event: CaseEvent) -> CaseEventRow:
    return CaseEventRow(
        case_id=case_id,
        seq=event.seq,
        at=event.at,
        kind=event.kind.value,
        actor=event.actor,
        text=event.text,
        data=dict(event.data),
    )
