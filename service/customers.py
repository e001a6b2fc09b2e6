"""The customers the product already knows, for a person opening a case by hand: every tenant a
case, an invoice in collections or an account was about (the database projection, no Temporal
round trip), found by its tenant id, its name or its email. The latest record of a tenant says
its name, email and language. A tenant's overview (its page in the workspace): its cases, its
invoices in collections, its account's holds and overrides, from the same projection."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.models import AccountOverrides, Hold, Locale
from core.settings import Settings
from db.tables import Account, Case, Collections
from service.calls import reading
from service.workspace import CaseRow, case_row, text_match

FOUND_AT_MOST = 20
LISTED_AT_MOST = 100  # of a tenant's cases, and of its invoices, the latest
SOURCES: tuple[Any, ...] = (Case, Collections, Account)


@dataclass(frozen=True)
class KnownCustomer:
    tenant_id: str
    name: str
    email: str
    locale: Locale
    seen_at: datetime  # the latest record of the tenant


@dataclass(frozen=True)
class Overview:
    """A tenant as its page shows it: the latest first."""

    customer: KnownCustomer
    cases: list[CaseRow]
    invoices: list[Collections]
    holds: list[Hold]
    overrides: AccountOverrides | None  # None: it has no account (nothing was ever suspended)

    @property
    def workflow_ids(self) -> list[str]:
        return [row.workflow_id for row in self.cases] + [row.workflow_id for row in self.invoices]

    @property
    def subject_ids(self) -> list[str]:
        """What our emails about it are filed under (service.workspace.latest_emails)."""
        return [row.case_id for row in self.cases] + [row.invoice_id for row in self.invoices]


class Customers:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def find(self, text: str, limit: int = FOUND_AT_MOST) -> list[KnownCustomer]:
        """Up to `limit` tenants whose id, name or email contains `text` (case-insensitive), the
        most recently seen first; none for a blank `text`."""
        text = text.strip()[:200]
        if not text:
            return []
        return await asyncio.to_thread(self._find, text, max(1, min(limit, FOUND_AT_MOST)))

    async def get(self, tenant_id: str) -> KnownCustomer | None:
        """The tenant as last seen, or None when the product knows nothing of it."""
        return await asyncio.to_thread(self._get, tenant_id.strip().lower()[:36])

    async def overview(self, tenant_id: str) -> Overview | None:
        """The tenant's cases, invoices in collections and account; None for a tenant the
        product knows nothing of."""
        return await asyncio.to_thread(self._overview, tenant_id.strip().lower()[:36])

    def _overview(self, tenant_id: str) -> Overview | None:
        known = self._get(tenant_id)
        if known is None:
            return None
        with reading(self._settings.database_url) as session:
            cases = session.scalars(
                select(Case)
                .where(Case.tenant_id == tenant_id)
                .order_by(Case.opened_at.desc(), Case.case_id)
                .limit(LISTED_AT_MOST)
            ).all()
            invoices = session.scalars(
                select(Collections)
                .where(Collections.tenant_id == tenant_id)
                .order_by(Collections.first_failed_at.desc(), Collections.invoice_id)
                .limit(LISTED_AT_MOST)
            ).all()
            account = session.get(Account, tenant_id)
            session.expunge_all()  # read after the session: plain values, no lazy loading
        return Overview(
            known,
            [case_row(row) for row in cases],
            list(invoices),
            [Hold.model_validate(hold) for hold in account.holds] if account else [],
            AccountOverrides.model_validate(account.overrides or {}) if account else None,
        )

    def _find(self, text: str, limit: int) -> list[KnownCustomer]:
        latest: dict[str, KnownCustomer] = {}
        with reading(self._settings.database_url) as session:
            for model in SOURCES:
                columns = [model.tenant_id, model.customer_name, model.customer_email]
                query = (
                    select(model)
                    .where(text_match(columns, text))
                    .order_by(model.updated_at.desc())
                    .limit(limit * 5)  # a tenant has many cases: enough rows for `limit` tenants
                )
                for row in session.scalars(query):
                    _keep_latest(latest, _customer(row))
        found = sorted(latest.values(), key=lambda known: known.seen_at, reverse=True)
        return found[:limit]

    def _get(self, tenant_id: str) -> KnownCustomer | None:
        latest: dict[str, KnownCustomer] = {}
        with reading(self._settings.database_url) as session:
            for model in SOURCES:
                query = (
                    select(model)
                    .where(model.tenant_id == tenant_id)
                    .order_by(model.updated_at.desc())
                    .limit(1)
                )
                for row in session.scalars(query):
                    _keep_latest(latest, _customer(row))
        return latest.get(tenant_id)


def _customer(row: Any) -> KnownCustomer:
    return KnownCustomer(
        row.tenant_id, row.customer_name, row.customer_email, Locale(row.locale), row.updated_at
    )


def _keep_latest(latest: dict[str, KnownCustomer], known: KnownCustomer) -> None:
    kept = latest.get(known.tenant_id)
    if kept is None or known.seen_at > kept.seen_at:
        latest[known.tenant_id] = known
