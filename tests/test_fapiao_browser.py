"""Fapiao in a real browser (Playwright driving Debian's Chromium), in zh-CN: an agent opens a
fapiao case on the new-case page and asks finance for a fapiao; finance finds it on the fapiao
tasks page, a number that is not 20 digits is refused beside the form naming the field, the right
one recorded marks the task done; the case page shows the fapiao and the case is the agent's again.

WORKSPACE_SCREENSHOTS=docs also writes the fapiao tasks page's screenshot there."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from core.models import CaseStatus, Locale
from service.users import NewUser, Role
from tests.test_temporal_ui import CHROMIUM, WAIT_MS
from tests.test_workspace_browser import Served, do, serving, sign_in
from tests.workspace_support import AGENT, PASSWORD, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)
FINANCE_ZH = "finance.sun@partner.example.cn"


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("fapiao-browser")
    async with workspace(dev_env, folder) as stack, serving(stack) as served:
        await stack.service.users.add(
            NewUser(
                email=FINANCE_ZH,
                name="孙财务",
                roles=[Role.FINANCE],
                locale=Locale.ZH_CN,
                password=SecretStr(PASSWORD),
            )
        )
        yield served


async def test_an_agent_opens_a_fapiao_case_and_finance_records_the_number(
    served: Served,
) -> None:
    number = f"2631{uuid.uuid4().int % 10**16:016d}"
    agent = await sign_in(served, AGENT)
    try:
        await agent.get_by_role("link", name="新建工单").click()
        form = agent.locator('form[action="/cases/new"]')
        for name, value in {
            "tenant_id": str(uuid.uuid4()),
            "name": "上海示例科技有限公司",
            "email": "ap@customer.example.cn",
            "description": "请开具 11 月账单的增值税专用发票。",
            "invoice_id": "G000778899",
        }.items():
            await form.locator(f'[name="{name}"]').fill(value)
        await form.locator('[name="locale"]').select_option("zh-CN")
        await form.locator('[name="category"]').select_option("fapiao")
        await form.locator('[name="priority"]').select_option("normal")
        async with agent.expect_navigation(timeout=WAIT_MS * 2):
            await form.locator("button[type=submit]").click()
        await expect(agent).to_have_url(re.compile(r"/cases/[^/?]+"))
        case_id = agent.url.rsplit("/cases/", 1)[1].split("?")[0]
        await expect(agent.locator("main")).to_contain_text("发票事宜")
        await do(
            agent,
            "request-fapiao",
            kind="issue",
            buyer_name="上海示例科技有限公司",
            buyer_tax_id="91310000MA1FL8XQ3C",
            buyer_bank_account="招商银行上海分行 1219 0000 0000",
        )
        await expect(agent.locator("[data-fapiao]")).to_contain_text("等待财务登记发票号码")
    finally:
        await agent.context.close()

    finance = await sign_in(served, FINANCE_ZH)
    try:
        await finance.get_by_role("link", name="发票任务").click()
        row = finance.locator(f'#fapiao-tasks tr[data-case="{case_id}"]')
        await expect(row).to_contain_text("开具发票")
        await expect(row).to_contain_text("91310000MA1FL8XQ3C")
        await do(finance, "done", fapiao_number="263100000000")  # 12 digits: refused
        refusal = finance.locator('details[data-action="done"] [data-problem="fapiao_number"]')
        await expect(refusal.first).to_contain_text("(fapiao_number)")
        await expect(refusal.first).to_contain_text("须为 20 位数电票号码")
        await expect(finance.locator("#fapiao-tasks")).to_contain_text(case_id)
        await do(finance, "done", fapiao_number=number)
        await expect(finance.locator("p.done")).to_contain_text("已登记发票号码")
        await expect(finance.locator("#fapiao-tasks")).to_contain_text("暂无待处理的发票任务")
        await expect(finance.locator("#fapiao-recorded")).to_contain_text(number)
        assert "Fapiao" not in await finance.locator("main").inner_text()  # no English for zh-CN
        await finance.screenshot(path="/tmp/fapiao-tasks.png", full_page=True)
        if folder := os.environ.get("WORKSPACE_SCREENSHOTS"):
            await finance.screenshot(path=str(Path(folder) / "workspace-fapiao.png"))
    finally:
        await finance.context.close()

    view = await served.stack.service.cases.show(case_id)
    assert view.status is CaseStatus.OPEN and [f.number for f in view.fapiao] == [number]
    agent = await sign_in(served, AGENT)
    try:
        await agent.goto(f"{served.url}/cases/{case_id}")
        await expect(agent.locator("main")).to_contain_text(number)
        await agent.screenshot(path="/tmp/fapiao-case.png", full_page=True)
    finally:
        await agent.context.close()
