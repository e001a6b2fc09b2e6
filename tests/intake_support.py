"""Shared by the intake tests: the real worker on a fresh task queue, and billing-run failures."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from api.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from core.settings import Settings
from db.migrate import upgrade
from worker import build_worker

BILLING_SECRET = "test-billing-secret-4f1c9a7e2b"
PORTAL_SECRET = "test-portal-secret-8d2e6b1f3a"
# what the API settings need: each caller's secrets (for model_copy(update=SIGNED))
SIGNED: dict[str, Any] = {
    "billing_webhook_secrets": SecretStr(BILLING_SECRET),
    "portal_webhook_secrets": SecretStr(PORTAL_SECRET),
}
FAILED_AT = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


@asynccontextmanager
async def running_worker(client: Client, tmp_path: Path) -> AsyncIterator[Settings]:
    """The real worker against a migrated SQLite file and a file outbox, on a fresh task queue;
    the collections and case policies are the defaults from config/."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        task_queue=f"intake-{uuid.uuid4()}",
        billing_webhook_secrets=SIGNED["billing_webhook_secrets"],
        portal_webhook_secrets=SIGNED["portal_webhook_secrets"],
    )
    upgrade(settings.database_url)
    async with build_worker(client, settings):
        yield settings


def unique_prefix() -> str:
    """Invoice ids of one test: the dev server lives for the whole session."""
    return f"T{uuid.uuid4().hex[:10].upper()}"


def guid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts))))


def failure_fields(invoice_id: str, failure_id: str, /, **overrides: Any) -> dict[str, Any]:
    """One failure as the flat fields of a failures file (and of the JSON Lines format)."""
    fields: dict[str, Any] = {
        "failure_id": failure_id,
        "invoice_id": invoice_id,
        "tenant_id": guid("tenant", invoice_id),
        "customer_name": "上海云帆信息科技有限公司",
        "customer_email": "finance@yunfan.example.cn",
        "locale": "zh-CN",
        "subscription_ids": [guid("subscription", invoice_id, n) for n in range(2)],
        "amount_due": "12340.50",
        "currency": "CNY",
        "failed_at": FAILED_AT.isoformat(),
        "reason": "card declined",
    }
    return {**fields, **overrides}


PORTAL_NAME = "上海云帆信息科技有限公司"
PORTAL_EMAIL = "finance@yunfan.example.cn"


def portal_case(tenant: str) -> dict[str, str]:
    """A case as the customer portal sends it to POST /v1/cases."""
    return {
        "tenant_id": tenant,
        "name": PORTAL_NAME,
        "email": PORTAL_EMAIL,
        "category": "billing-question",
        "description": "发票金额与合同不符。",
    }


def billing_failure_body(invoice_id: str, failure_id: str, /, **overrides: Any) -> dict[str, Any]:
    """The same failure as the HTTP intake takes it (a BillingFailure)."""
    flat = failure_fields(invoice_id, failure_id)
    body: dict[str, Any] = {
        "failure_id": failure_id,
        "invoice_id": invoice_id,
        "customer": {
            "tenant_id": flat["tenant_id"],
            "name": flat["customer_name"],
            "email": flat["customer_email"],
            "locale": flat["locale"],
        },
        "subscription_ids": flat["subscription_ids"],
        "amount_due": flat["amount_due"],
        "currency": flat["currency"],
        "failed_at": flat["failed_at"],
        "reason": flat["reason"],
    }
    return {**body, **overrides}


def caller_secret(path: str) -> str:
    return PORTAL_SECRET if path == "/v1/cases" else BILLING_SECRET


def signed(
    body: dict[str, Any] | bytes,
    *,
    path: str,
    key: str | None = None,
    secret: str | None = None,
    at: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and the headers of a request to `path` as its caller signs it (a new
    Idempotency-Key unless `key`)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    key = key if key is not None else str(uuid.uuid4())
    timestamp = int(time.time()) if at is None else at
    headers = {
        "Content-Type": "application/json",
        KEY_HEADER: key,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(
            secret or caller_secret(path), timestamp, raw, method="POST", path=path, key=key
        ),
    }
    return raw, headers


async def post(
    http: httpx.AsyncClient, path: str, body: dict[str, Any] | bytes, **how: Any
) -> httpx.Response:
    raw, headers = signed(body, path=path, **how)
    return await http.post(path, content=raw, headers=headers)
