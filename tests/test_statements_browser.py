"""Bank statements in a real browser (Playwright driving Debian's Chromium), as a zh-CN finance
person: the upload of an ICBC statement in GBK (a line matched by its bill number, a mistyped one
waiting with its candidate, one nobody's), the summary; the queue's one-click match, a line set
aside as no customer's payment; the same file
again (duplicates only); a file of no known layout refused in Chinese; an agent is not let in.

WORKSPACE_SCREENSHOTS=docs also writes the pages' screenshots there."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect
from temporalio.testing import WorkflowEnvironment

from service.users import Role
from tests.intake_support import unique_prefix
from tests.people_support import account
from tests.statement_support import (
    YUNFAN,
    Transfer,
    balance,
    open_invoice,
    statement,
    stored,
    write_csv,
)
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
    folder = tmp_path_factory.mktemp("statements")
    async with workspace(dev_env, folder) as stack, serving(stack) as served:
        yield served


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=f"/tmp/statement-{name}.png", full_page=True)
    if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
        await page.screenshot(path=str(Path(target) / f"workspace-{name}.png"), full_page=True)


async def upload(page: Page, path: Path) -> None:
    form = page.get_by_test_id("upload")
    await form.locator('input[type="file"]').set_input_files(str(path))
    async with page.expect_navigation(timeout=WAIT_MS * 4):
        await form.locator("button").click()


async def test_finance_imports_a_statement_and_matches_what_waits(
    served: Served, tmp_path: Path
) -> None:
    service = served.stack.service
    p = unique_prefix()
    paid, typo = f"{p}01", f"{p}27"
    await open_invoice(service, paid, YUNFAN, "1500.00", 1)
    await open_invoice(service, typo, "深圳前海数联科技有限公司", "888.00", 2)
    await stored(service, [paid, typo])
    icbc = statement(
        tmp_path / "工行流水.csv",
        "icbc",
        [
            Transfer(Decimal("1500.00"), YUNFAN, "6222020200112233", f"支付账单{paid}"),
            Transfer(Decimal("888.00"), "前海集团代付", "6228480011223344", f"付{p}72"),
            Transfer(Decimal("66.00"), "陌生公司", "", "往来款"),
        ],
        "gbk",
    )
    email = await account(served.stack, Role.FINANCE, name="钱财务")
    page = await sign_in(served, email)
    try:
        await page.get_by_role("link", name="银行流水").click()
        await expect(page.locator("h1")).to_contain_text("银行流水")
        await upload(page, icbc)
        summary = page.get_by_test_id("summary")
        await expect(summary).to_contain_text("中国工商银行")
        await expect(page.get_by_test_id("matched")).to_have_text("1")
        await expect(page.get_by_test_id("ambiguous")).to_have_text("1")
        await expect(page.get_by_test_id("unmatched")).to_have_text("1")
        assert await balance(service, paid) == 0
        queue = page.get_by_test_id("queue")
        await expect(queue).to_contain_text("账单号可能有误")
        await expect(queue).to_contain_text("无账单号，付款方未知")
        await shot(page, "statements")

        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await queue.locator(f'button[data-invoice="{typo}"]').click()
        await expect(page.get_by_test_id("done")).to_contain_text("已匹配")
        await expect(page.get_by_test_id("line")).to_have_count(1)
        assert await balance(service, typo) == 0
        # today's matches: the one the import made and the one finance just made
        today = page.get_by_test_id("matched-today")
        await expect(today.get_by_test_id("matched-line")).to_have_count(2)
        await expect(today).to_contain_text(paid)
        await expect(today).to_contain_text(typo)

        # a wrong invoice typed for the last line: refused beside it, in Chinese
        other = page.locator('form[data-action="match-other"]')
        await other.locator('[name="invoice_id"]').fill(paid)
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await other.locator("button").click()
        await expect(page.get_by_test_id("refusal")).to_contain_text("该账单无法接收这笔付款")
        # nobody's money (a supplier's refund, say): set aside, nothing paid
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await page.locator('form[data-action="set-aside"] button').click()
        await expect(page.get_by_test_id("done")).to_contain_text("已移出")
        await expect(page.get_by_test_id("empty")).to_be_visible()

        await upload(page, icbc)
        await expect(page.get_by_test_id("duplicates")).to_have_text("3")
        await expect(page.get_by_test_id("matched")).to_have_text("0")

        await upload(page, write_csv(tmp_path / "其他银行.csv", [["日期", "金额"]], "gbk"))
        await expect(page.get_by_test_id("refusal")).to_contain_text("不符合任何已知的银行格式")
        await shot(page, "statements-refused")
    finally:
        await page.context.close()

    agent = await sign_in(served, AGENT)
    try:
        answer = await agent.goto(f"{served.url}/statements")
        assert answer is not None and answer.status == 403
        await expect(agent.get_by_role("link", name="银行流水")).to_have_count(0)
    finally:
        await agent.context.close()
