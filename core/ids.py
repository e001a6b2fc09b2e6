"""Every workflow id format and every new id, in one place: the service layer, the workflows (a
dispute case opened from collections) and the stores all name things the same way."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

CASE = "case-"
COLLECTIONS = "collections-"
VIANET_INVOICE = "vianet-invoice-"


def case_workflow_id(case_id: str) -> str:
    return f"{CASE}{case_id}"


def collections_workflow_id(invoice_id: str) -> str:
    return f"{COLLECTIONS}{invoice_id}"


def vianet_invoice_workflow_id(invoice_number: str) -> str:
    return f"{VIANET_INVOICE}{invoice_number}"


def dispute_case_id(invoice_id: str, number: int) -> str:
    """The case a collections workflow opens for the `number`th dispute of its invoice."""
    return f"{invoice_id}-D{number}"


def new_case_id(now: datetime | None = None) -> str:
    """`BC-<day>-<6 hex>`, e.g. BC-20261124-7F3A9C."""
    return f"BC-{(now or datetime.now(UTC)):%Y%m%d}-{secrets.token_hex(3).upper()}"
