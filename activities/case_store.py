"""Keeps each workflow's row and its append-only event log in step with the workflow: ``cases`` +
``case_events`` for billing cases, ``collections`` + ``collections_events`` for collections."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from core.models import CaseEvent, PersistCase, PersistCollections
from db.tables import Case, CaseEventRow, Collections, CollectionsEventRow

Row = Case | Collections
EventRow = CaseEventRow | CollectionsEventRow


class CaseStoreActivities:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    @activity.defn
    def persist_case(self, data: PersistCase) -> None:
        """Upsert the case row and append the events it has not stored yet; safe to repeat."""
        columns = _columns(data.record.model_dump())
        self._upsert(Case, data.record.case_id, columns, data.events, _case_event)

    @activity.defn
    def persist_collections(self, data: PersistCollections) -> None:
        """Upsert the collections row and append its new events; safe to repeat."""
        view = data.view
        columns = _columns(
            {
                **view.model_dump(exclude={"customer", "failures", "timeline"}),
                "tenant_id": view.customer.tenant_id,
                "customer_name": view.customer.name,
                "customer_email": str(view.customer.email),
                "locale": view.customer.locale,
            }
        )
        self._upsert(Collections, view.invoice_id, columns, data.events, _collections_event)

    def _upsert(
        self,
        model: type[Row],
        key: str,
        columns: dict[str, Any],
        events: list[CaseEvent],
        event_row: Callable[[str, CaseEvent], EventRow],
    ) -> None:
        try:
            self._write(model, key, columns, events, event_row)
        except IntegrityError:
            # a concurrent attempt inserted the row or the events first; a second pass skips them
            self._write(model, key, columns, events, event_row)

    def _write(
        self,
        model: type[Row],
        key: str,
        columns: dict[str, Any],
        events: list[CaseEvent],
        event_row: Callable[[str, CaseEvent], EventRow],
    ) -> None:
        with self._session_factory.begin() as session:
            if session.get_bind().dialect.name == "sqlite":
                # take SQLite's write lock before reading, as FOR UPDATE does on PostgreSQL
                session.execute(text("BEGIN IMMEDIATE"))
            found = cast(Row | None, session.get(model, key, with_for_update=True))
            row: Row = found if found is not None else model(last_event_seq=0)
            session.add(row)
            # the row is last-writer-wins; the event log only grows and last_event_seq never drops
            for column, value in columns.items():
                setattr(row, column, value)
            session.flush()  # the row must exist before its events reference it
            new_events = [event for event in events if event.seq > row.last_event_seq]
            session.add_all(event_row(key, event) for event in new_events)
            row.last_event_seq = max([row.last_event_seq, *(event.seq for event in new_events)])


def _columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Model fields as columns: same names, enums as their string values."""
    return {
        name: value.value if isinstance(value, Enum) else value for name, value in fields.items()
    }


def _event_fields(event: CaseEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at,
        "kind": event.kind.value,
        "actor": event.actor,
        "text": event.text,
        "data": dict(event.data),
    }


def _case_event(case_id: str, event: CaseEvent) -> EventRow:
    return CaseEventRow(case_id=case_id, **_event_fields(event))


def _collections_event(invoice_id: str, event: CaseEvent) -> EventRow:
    return CollectionsEventRow(invoice_id=invoice_id, **_event_fields(event))
