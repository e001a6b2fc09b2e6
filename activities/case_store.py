"""Keeps each workflow's row and its append-only event log in step with the workflow: ``cases`` +
``case_events`` for billing cases, ``collections`` + ``collections_events`` for collections."""

from __future__ import annotations

from enum import Enum
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.errors import database
from core.models import (
    CaseEvent,
    PersistAccount,
    PersistCase,
    PersistCollections,
    RefundStatus,
)
from db.session import lock_for_write, twice_on_conflict
from db.tables import (
    Account,
    AccountEventRow,
    Case,
    CaseEventRow,
    Collections,
    CollectionsEventRow,
    table,
)

# Written with Core statements, not the ORM's unit of work: 8 of these run per case, and the ORM
# took 1.7 ms of the worker's CPU for each (docs/performance.md).
CASES, CASE_EVENTS = table(Case), table(CaseEventRow)
COLLECTIONS, COLLECTIONS_EVENTS = table(Collections), table(CollectionsEventRow)
ACCOUNTS, ACCOUNT_EVENTS = table(Account), table(AccountEventRow)


# what a collections view has that its row does not (the events have a table of their own)
NOT_STORED = {
    "customer",
    "failures",
    "timeline",
    "needs_attention",
    "event_count",
    "approval_asked_at",
    "final_notice",
    # shown, not stored (yet): the policy the invoice runs, what was waived, the customer's credit
    "policy",
    "waived",
    "credit",
    "overpayment",
    "credit_applied",
}


class CaseStoreActivities:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    @activity.defn
    def persist_case(self, data: PersistCase) -> None:
        """Upsert the case row and append the events it has not stored yet; safe to repeat."""
        columns = _columns(data.record.model_dump())
        columns["view"] = data.view.model_dump(mode="json") if data.view else None
        self._upsert(CASES, CASE_EVENTS, data.record.case_id, columns, data.events)

    @activity.defn
    def persist_collections(self, data: PersistCollections) -> None:
        """Upsert the collections row and append its new events; safe to repeat."""
        view = data.view
        columns = _columns(
            {
                **view.model_dump(exclude=NOT_STORED),
                "tenant_id": view.customer.tenant_id,
                "customer_name": view.customer.name,
                "customer_email": str(view.customer.email),
                "locale": view.customer.locale,
            }
        )
        self._upsert(COLLECTIONS, COLLECTIONS_EVENTS, view.invoice_id, columns, data.events)

    @activity.defn
    def persist_account(self, data: PersistAccount) -> None:
        """Upsert the account row (its holds and overrides) and append its new events."""
        view = data.view
        columns = {
            "workflow_id": view.workflow_id,
            "tenant_id": view.tenant_id,
            "customer_name": view.customer.name,
            "customer_email": str(view.customer.email),
            "locale": view.customer.locale.value,
            "holds": [hold.model_dump(mode="json") for hold in view.holds],
            "suspended_subscriptions": list(view.suspended_subscriptions),
            "fraud": view.fraud,
            "overrides": view.overrides.model_dump(mode="json"),
            "ledger": view.ledger.model_dump(mode="json"),
            "has_credit": any(b.balance or b.reserved for b in view.ledger.balances),
            "refunds_awaiting": sum(
                r.status is RefundStatus.AWAITING_APPROVAL for r in view.ledger.refunds
            ),
        }
        self._upsert(ACCOUNTS, ACCOUNT_EVENTS, view.tenant_id, columns, data.events)

    def _upsert(
        self,
        rows: Table,
        event_rows: Table,
        key: str,
        columns: dict[str, Any],
        events: list[CaseEvent],
    ) -> None:
        with database(f"the {rows.name} row {key} and its events"):
            twice_on_conflict(lambda: self._write(rows, event_rows, key, columns, events))

    def _write(
        self,
        rows: Table,
        event_rows: Table,
        key: str,
        columns: dict[str, Any],
        events: list[CaseEvent],
    ) -> None:
        # the row's key column and the event log's reference to it share a name (case_id, ...)
        (key_column,) = rows.primary_key.columns
        with self._session_factory.begin() as session:
            lock_for_write(session)
            stored = session.execute(
                select(rows.c.last_event_seq).where(key_column == key).with_for_update()
            ).first()
            last_seq = 0 if stored is None else stored.last_event_seq
            # the row is last-writer-wins; the event log only grows and last_event_seq never drops
            new_events = [event for event in events if event.seq > last_seq]
            values = {
                **columns,
                key_column.name: key,
                "last_event_seq": max([last_seq, *(event.seq for event in new_events)]),
            }
            # the values go in as parameters, not into the statement: it compiles once, from cache
            if stored is None:
                session.execute(insert(rows), values)
            else:
                statement = update(rows).where(key_column == bindparam("stored_key"))
                session.execute(statement, {**values, "stored_key": key})
            if new_events:  # after the row: the events reference it
                session.execute(
                    insert(event_rows),
                    [{key_column.name: key, **_event_fields(event)} for event in new_events],
                )


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
