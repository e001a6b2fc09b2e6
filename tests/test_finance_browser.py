"""Finance's pages in a real browser (Playwright driving Debian's Chromium), on the real stack (dev
server, worker, workspace): an overpayment and a payment after the invoice ended become the
customer's credit balance (the same payment id with another amount refused, naming both);
finance, in Chinese, finds it on the credit balances page, applies part of it to another open
invoice and asks a refund above REFUND_APPROVAL_ABOVE (one above what is left refused beside the
form); a manager approves it on the refunds page; the customer gets the letters in Chinese, each
saying what was applied or refunded and what remains.

WORKSPACE_SCREENSHOTS=<folder> writes the pages' screenshots there (else /tmp)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from core.models import PaymentReceived
from db.session import shared_sessions
from db.tables import Account
from service.errors import Refused
from tests.clock_support import eventually
from tests.test_temporal_ui import CHROMIUM, WAIT_MS
from tests.test_workspace_browser import Served, do, serving, sign_in
from tests.workflow_support import billing_failure
from tests.workspace_support import FINANCE, MANAGER, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)
SHOTS = Path(os.environ.get("WORKSPACE_SCREENSHOTS", "/tmp"))


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("finance")
    async with (
        workspace(dev_env, folder, refund_approval_above="CNY=5000.00") as stack,
        serving(stack) as served,
    ):
        yield served


def _letters(outbox: Path, category: str) -> list[str]:
    found = []
    for path in sorted(outbox.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["X-Category"] == category:
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            found.append(str(message["Subject"]) + "\n" + body.get_content())
    return found


def _ledger(database_url: str, tenant_id: str) -> dict[str, object]:
    with shared_sessions(database_url)() as session:
        row = session.execute(select(Account.ledger).where(Account.account_id == tenant_id))
        found = row.scalar_one_or_none()
    return dict(found or {})


def _balance(database_url: str, tenant_id: str) -> str | None:
    balances = _ledger(database_url, tenant_id).get("balances") or []
    assert isinstance(balances, list)
    return next((b["received"] for b in balances if b["currency"] == "CNY"), None)


async def _in_chinese(page: Page) -> None:
    """Finance reads English by default (their account's language): switched to Chinese."""
    switch = page.locator('form[action="/locale"] button[value="zh-CN"]')
    if await switch.count():
        async with page.expect_navigation(timeout=WAIT_MS):
            await switch.click()


async def test_finance_applies_and_refunds_credit_and_a_manager_approves(served: Served) -> None:
    service, settings = served.stack.service, served.stack.settings
    first = billing_failure(amount="1000.00")
    tenant = first.customer.tenant_id
    second = first.model_copy(
        update={"failure_id": "F-second", "invoice_id": "G2" + first.invoice_id[2:]}
    )
    second = second.model_copy(update={"amount_due": Decimal("3000.00")})
    await service.collections.report_failure(first)
    await service.collections.report_failure(second)

    def paid(payment_id: str, amount: str) -> PaymentReceived:
        return PaymentReceived(
            payment_id=payment_id,
            invoice_id=first.invoice_id,
            amount=Decimal(amount),
            received_at=first.failed_at,
        )

    view = await service.collections.act(first.invoice_id, paid("PAY-1", "9000.00"))
    assert view.balance == 0 and view.credit == Decimal("8000.00")
    await eventually(
        lambda: _balance(settings.database_url, tenant) == "8000.00", "the ledger has the credit"
    )
    # the invoice ended: a second transfer is the customer's credit too, once
    await eventually(lambda: service.collections._ended(first.invoice_id), "the invoice ended")
    later = await service.collections.act(first.invoice_id, paid("PAY-2", "250.00"))
    assert later.credit == Decimal("250.00")
    with pytest.raises(Refused, match=r"¥250\.00.*¥25\.00"):
        await service.collections.act(first.invoice_id, paid("PAY-2", "25.00"))
    await eventually(
        lambda: _balance(settings.database_url, tenant) == "8250.00", "the second transfer"
    )

    page = await sign_in(served, FINANCE)
    try:
        await _in_chinese(page)
        await page.get_by_role("link", name="财务", exact=True).click()
        await expect(page.locator("h1")).to_have_text("财务")
        await page.screenshot(path=str(SHOTS / "finance-landing.png"), full_page=True)
        await page.get_by_role("link", name="贷记余额").click()
        row = page.locator(f'tr[data-tenant="{tenant}"]')
        await expect(row).to_contain_text("¥8,250.00")
        await do(page, "apply", invoice_id=second.invoice_id, currency="CNY", amount="1200.00")
        await expect(page.locator("p.done")).to_contain_text("抵扣账单")
        await eventually(
            lambda: bool(_letters(settings.outbox_dir, "credit_applied")), "the letter"
        )
        await page.reload()
        await expect(row).to_contain_text("¥7,050.00")
        # more than is left: refused beside the form, naming the field, nothing changed
        await do(page, "refund", currency="CNY", amount="7050.01", reason="客户要求退款")
        refusal = page.locator('details[data-action="refund"] .refusal')
        await expect(refusal).to_contain_text("amount")
        await expect(refusal).to_contain_text("¥7,050.00")
        await do(page, "refund", currency="CNY", amount="6000.00", reason="客户要求退回多付款项")
        await expect(row).to_contain_text("¥6,000.00")  # held back for the manager
        await page.screenshot(path=str(SHOTS / "finance-credits.png"), full_page=True)
        await page.goto(f"{served.url}/finance/refunds")  # finance sees it, a manager decides
        await expect(page.locator("tr[data-refund]")).to_have_count(1)
        await expect(page.locator('details[data-action="approve"]')).to_have_count(0)
        await page.goto(f"{served.url}/collections/{second.invoice_id}")
        await expect(page.get_by_test_id("credit-applied")).to_have_text("¥1,200.00")
    finally:
        await page.context.close()

    manager = await sign_in(served, MANAGER)
    try:
        await manager.get_by_role("link", name="财务", exact=True).click()
        await manager.get_by_role("link", name="待审批退款").click()
        waiting = manager.locator("tr[data-refund]")
        await expect(waiting).to_have_count(1)
        await expect(waiting).to_contain_text("¥6,000.00")
        await expect(waiting).to_contain_text(FINANCE)
        await manager.screenshot(path=str(SHOTS / "finance-refunds.png"), full_page=True)
        await do(manager, "approve", reason="已核对银行流水")
        await expect(manager.locator("p.done")).to_contain_text("批准退款")
        await expect(manager.locator("tr[data-refund]")).to_have_count(0)
    finally:
        await manager.context.close()

    await eventually(lambda: bool(_letters(settings.outbox_dir, "credit_refunded")), "refunded")
    [applied] = _letters(settings.outbox_dir, "credit_applied")
    assert "¥1,200.00" in applied and "¥7,050.00" in applied and "¥1,800.00" in applied
    [refunded] = _letters(settings.outbox_dir, "credit_refunded")
    assert "¥6,000.00" in refunded and "¥1,050.00" in refunded and "贷记余额" in refunded
    [received] = _letters(settings.outbox_dir, "credit_received")
    assert "¥250.00" in received and "¥8,250.00" in received
    invoice = await service.collections.show(second.invoice_id)
    assert invoice.balance == Decimal("1800.00") and invoice.credit_applied == Decimal("1200.00")
