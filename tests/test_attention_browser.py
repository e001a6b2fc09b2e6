"""需要处理 in a real browser (Playwright driving Debian's Chromium), on the real worker: an invoice
whose suspension waits for a manager, an invoice whose customer replied, a customer's account
that needs a person and an overdue 21Vianet invoice each show in the queue with why in Chinese and
the link to the page where a person acts; each leaves the queue once a person acted there (the
manager approves, the agent files the dispute, the manager marks the account handled, finance
marks the 21Vianet invoice paid). The manager's email of the approval went to the manager's
account, in Chinese, with the invoice's link.

WORKSPACE_SCREENSHOTS=docs also writes the queue's screenshot there
(docs/workspace-attention.png)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect
from temporalio.testing import WorkflowEnvironment

from core.formatting import china_day
from core.ids import collections_workflow_id
from core.models import (
    AccountOverrides,
    CollectionsReply,
    RecordVianetInvoice,
    SetOverrides,
)
from service.calls import signal_if_running
from tests.clock_support import eventually
from tests.test_attention import outbox_emails
from tests.test_phone_pages import approval_policy
from tests.test_temporal_ui import CHROMIUM
from tests.test_workspace_browser import Served, do, serving, sign_in
from tests.workflow_support import billing_failure, open_case
from tests.workspace_support import AGENT, FINANCE, MANAGER, csrf_of, signed_in, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)
QUEUE = "/queues/needs-attention"


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("attention")
    async with (
        workspace(dev_env, folder, collections_policy_file=approval_policy(folder)) as stack,
        serving(stack) as served,
    ):
        yield served


async def listed(page: Page, served: Served, key: str, present: bool = True) -> None:
    """The queue (reloaded, as a person would: Temporal's list is eventually consistent) lists
    `key`, or no longer does."""

    async def now() -> bool:
        await page.goto(f"{served.url}{QUEUE}")
        return (await page.locator(f'tr[data-key="{key}"]').count() > 0) == present

    await eventually(now, f"{key} {'in' if present else 'out of'} 需要处理", seconds=60)


async def follow(page: Page, served: Served, key: str, reason: str, link: str) -> None:
    """The row says why in Chinese and links to the page where a person acts: open it."""
    row = page.locator(f'tr[data-key="{key}"]')
    await expect(row).to_contain_text(reason)
    anchor = row.get_by_role("link", name=key)
    assert await anchor.get_attribute("href") == link
    await anchor.click()
    await page.wait_for_load_state()


async def test_each_kind_of_wait_shows_in_the_queue_and_leaves_it_once_a_person_acts(
    served: Served, tmp_path: Path
) -> None:
    service = served.stack.service
    approval, replied = billing_failure(), billing_failure()
    for failure in (approval, replied):
        await service.collections.report_failure(failure)
    tenant = approval.customer.tenant_id
    number = f"VN{uuid.uuid4().hex[:8].upper()}"
    due = china_day(datetime.now(UTC)) - timedelta(days=3)
    await service.vianet_invoices.record(
        RecordVianetInvoice(
            invoice_number=number,
            amount=Decimal("88000.00"),
            due_date=due,
            recorded_by=FINANCE,
            finance_email=FINANCE,
            manager_email="billing-manager@partner.example.cn",
        )
    )

    async def asked(invoice_id: str) -> bool:
        return (await service.collections.show(invoice_id)).approval_asked_at is not None

    async def both_asked() -> bool:
        return await asked(approval.invoice_id) and await asked(replied.invoice_id)

    await eventually(both_asked, "a manager is asked of each invoice", seconds=60)
    # the first customer is exempt from suspension: approving its invoice's asks its account
    await service.accounts.set_overrides(
        tenant,
        SetOverrides(
            overrides=AccountOverrides(exempt_from_suspension=True),
            reason="战略客户，经总经理批准",
            by=MANAGER,
        ),
    )
    await signal_if_running(
        service.client,
        collections_workflow_id(replied.invoice_id),
        "customer_replied",
        CollectionsReply(text="我们已于上周付款，请核对", by="ap@customer.example.cn"),
    )

    manager = await sign_in(served, MANAGER)
    agent = await sign_in(served, AGENT)
    try:
        # the manager: the suspension waits for them; they approve it on the invoice's page
        await listed(manager, served, approval.invoice_id)
        await listed(manager, served, number)
        await listed(manager, served, replied.invoice_id)
        await expect(manager.locator("h1")).to_have_text("需要处理")
        shot = Path(os.environ.get("ATTENTION_SHOTS", tmp_path)) / "attention.png"
        await manager.screenshot(path=shot, full_page=True)
        if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
            shutil.copyfile(shot, Path(target) / "workspace-attention.png")
        await follow(
            manager,
            served,
            approval.invoice_id,
            "暂停该客户订阅的步骤已到，等待经理批准或拒绝。",
            f"/collections/{approval.invoice_id}",
        )
        await expect(manager.get_by_test_id("attention-reason")).to_contain_text("等待经理批准")
        await manager.screenshot(path=shot.with_name("invoice.png"), full_page=True)
        await do(manager, "approve-suspension", reason="多次催缴未果，批准暂停")
        await listed(manager, served, approval.invoice_id, present=False)

        # the agent: the customer's reply waits for triage; filing the dispute is the triage
        await listed(agent, served, replied.invoice_id)
        await follow(
            agent,
            served,
            replied.invoice_id,
            "客户回复了催款通知，请分诊",
            f"/collections/{replied.invoice_id}",
        )
        await do(agent, "dispute", description="客户称已付款，金额待核对")
        await listed(agent, served, replied.invoice_id, present=False)

        # the exempt customer's account was asked to suspend: the manager marks it handled
        await listed(manager, served, tenant)
        await follow(
            manager,
            served,
            tenant,
            "该客户免于暂停服务，但有账单要求暂停",
            f"/customers/{tenant}#attention",
        )
        await expect(manager.get_by_test_id("attention-reason")).to_contain_text("免于暂停服务")
        await manager.screenshot(path=shot.with_name("account.png"), full_page=True)
        await do(manager, "attention-handled", note="已与客户经理确认，继续豁免")
        await listed(manager, served, tenant, present=False)
        account = await service.accounts.show(tenant)
        handled = [e for e in account.timeline if e.kind.value == "attention-handled"]
        assert [(e.actor, e.text) for e in handled] == [(MANAGER, "已与客户经理确认，继续豁免")]

        # the overdue 21Vianet invoice: its page is the payables, where finance marks it paid
        await follow(
            manager, served, number, "世纪互联发票已过付款期限：请付款并标记为已付。", "/payables"
        )
        payer = await sign_in(served, FINANCE)
        try:
            await payer.goto(f"{served.url}/payables")
            await do(payer, "paid", reference="CMB-20261207-0001")
        finally:
            await payer.context.close()
        await listed(agent, served, number, present=False)
    finally:
        await manager.context.close()
        await agent.context.close()

    # the manager's email of the approval: to their account, in Chinese, the invoice's link
    asked_them = [
        e
        for e in outbox_emails(served.stack.settings.outbox_dir)
        if str(e["To"]) == MANAGER and approval.invoice_id in str(e["Subject"])
    ]
    assert asked_them, "the manager was not emailed"
    body = asked_them[0].get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "暂停服务待审批" in str(asked_them[0]["Subject"])
    assert f"/collections/{approval.invoice_id}" in text and "--reason" not in text


async def test_the_panel_s_actions_are_a_manager_s_and_refuse_what_does_not_wait(
    served: Served,
) -> None:
    """Retry, skip and handled: refused with the workflow's reason when nothing waits (nothing
    changes), forbidden to an agent, and no such kind of workflow is a 404."""
    data = open_case(owner=AGENT)
    await served.stack.service.cases.open(data)
    base = f"/attention/case/{data.case_id}/actions"
    manager = await signed_in(served.stack.app, MANAGER)
    agent = await signed_in(served.stack.app, AGENT)
    token = csrf_of((await manager.get(f"/cases/{data.case_id}")).text)
    retried = await manager.post(f"{base}/attention-retry", data={"csrf_token": token})
    assert retried.status_code == 409 and "has no failed step waiting" in retried.text
    handled = await manager.post(
        f"{base}/attention-handled", data={"csrf_token": token, "note": "已处理"}
    )
    assert handled.status_code == 409 and "waits for nobody" in handled.text
    token = csrf_of((await agent.get(f"/cases/{data.case_id}")).text)
    forbidden = await agent.post(f"{base}/attention-retry", data={"csrf_token": token})
    assert forbidden.status_code == 403
    unknown = await manager.post(
        f"/attention/ledger/{data.case_id}/actions/attention-retry", data={"csrf_token": token}
    )
    assert unknown.status_code == 404
    view = await served.stack.service.cases.show(data.case_id)
    assert view.attention is None and not any(
        e.kind.value in ("step-retried", "attention-handled") for e in view.timeline
    )
