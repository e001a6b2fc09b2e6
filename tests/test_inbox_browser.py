"""The inbox and a customer page in a real browser (Playwright driving Debian's Chromium): an
out-of-office reply and two unknown senders' emails come in through the real inbound service; the
agent attaches one to a case, marks the other handled, finds the auto-reply under its own view,
and goes from the case to its customer's page.

WORKSPACE_SCREENSHOTS=docs also writes the inbox's and the customer page's screenshots there (the
docs/workspace.md's)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect
from temporalio.testing import WorkflowEnvironment

from tests.clock_support import eventually
from tests.test_attachment_downloads import INBOUND
from tests.test_inbox import out_of_office, stranger_mail, unpaid_invoice
from tests.test_temporal_ui import CHROMIUM, WAIT_MS
from tests.test_workspace_browser import Served, serving, sign_in
from tests.workspace_support import AGENT, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("inbox-browser")
    async with (
        workspace(dev_env, folder, attachments_dir=folder / "attachments", **INBOUND) as stack,
        serving(stack) as served,
    ):
        yield served


async def test_an_agent_triages_the_inbox_and_opens_a_customer_page(
    served: Served, tmp_path: Path
) -> None:
    stack = served.stack
    case_id = await out_of_office(stack)
    failure = await unpaid_invoice(stack, case_id)
    await stack.service.inbound.receive(stranger_mail("补充材料：十月账单", "附上对账单，请查收。"))
    await stack.service.inbound.receive(stranger_mail("会议邀请", "下周二下午三点方便通话吗？"))
    page = await sign_in(served, AGENT)
    try:
        await page.get_by_role("link", name="收件箱").click()
        letters = page.get_by_test_id("letter")
        await expect(letters).to_have_count(2, timeout=WAIT_MS)
        await expect(page.get_by_test_id("waiting")).to_contain_text("2 封等待人工处理")
        shot = tmp_path / "inbox.png"
        await page.screenshot(path=shot, full_page=True)
        assert shot.stat().st_size > 20_000
        if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
            shutil.copyfile(shot, Path(target) / "workspace-inbox.png")

        statement = letters.filter(has_text="补充材料：十月账单")
        await statement.locator('[name="case_id"]').fill(case_id)
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await statement.get_by_role("button", name="归入工单").click()
        await expect(page.get_by_test_id("done")).to_contain_text("已归入工单")
        meeting = page.get_by_test_id("letter").filter(has_text="会议邀请")
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await meeting.get_by_role("button", name="标记为已处理").click()
        await expect(page.get_by_test_id("done")).to_contain_text("已标记为已处理")
        await expect(page.get_by_test_id("empty")).to_be_visible()
        await page.get_by_test_id("views").get_by_role("link", name="自动回复").click()
        await expect(page.get_by_test_id("letter")).to_contain_text("休假至12月10日")

        tenant = failure.customer.tenant_id

        async def projected() -> bool:  # the invoice's row, written by its worker
            overview = await stack.service.customers.overview(tenant)
            return overview is not None and bool(overview.invoices)

        await eventually(projected, seconds=10)
        await page.goto(f"{served.url}/cases/{case_id}")
        emails = page.get_by_test_id("customer-email")
        await expect(emails.filter(has_text="补充材料：十月账单")).to_contain_text("客户来信")
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await page.get_by_test_id("customer").get_by_role("link").click()
        await expect(page.get_by_test_id("customer-name")).to_have_text("上海云帆科技有限公司")
        cases = page.get_by_test_id("customer-cases")
        await expect(cases.get_by_role("link", name=case_id)).to_be_visible()
        invoices = page.get_by_test_id("customer-invoices")
        await expect(invoices).to_contain_text(failure.invoice_id, timeout=WAIT_MS)
        await expect(invoices).to_contain_text("¥4,300.00")
        shot = tmp_path / "customer.png"
        await page.screenshot(path=shot, full_page=True)
        if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
            shutil.copyfile(shot, Path(target) / "workspace-customer.png")
        await invoices.get_by_role("link", name=failure.invoice_id).click()
        await expect(page.get_by_test_id("invoice-id")).to_have_text(failure.invoice_id)
    finally:
        await page.context.close()
