"""The customers the product already knows, for a person opening a case by hand: every tenant a
case, an invoice in collections or an account was about (the database projection, no Temporal
round trip), found by its tenant id, its name or its email. The latest record of a tenant says
its name, email and language."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.models import Locale
from core.settings import Settings
from db.tables import Account, Case, Collections
from service.calls import reading
from service.workspace import text_match

FOUND_AT_MOST = 20
SOURCES: tuple[Any, ...] = (Case, Collections, Account)


@dataclass(frozen=True)
class KnownCustomer:
    tenant_id: str
    name: str
    email: str
    locale: Locale
    seen_at: datetime  # the latest record of the tenant


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
