"""Opening a case and the workspace's people in a real browser (Playwright driving Debian's
Chromium, as test_workspace_browser.py does): an agent opens a case for a customer found by
name and lands on it; a bad field is refused beside it; a manager reassigns through the picker; a
forged address is refused and changes nothing; an admin disables someone whose open page stops
working at once; nobody else reaches the admin pages.

WORKSPACE_SCREENSHOTS=docs also writes the new-case page's screenshot there (for
docs/workspace.md)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from service.users import Role
from tests.people_support import account, cases_of, known_customer
from tests.test_temporal_ui import CHROMIUM, WAIT_MS
from tests.test_workspace_browser import Served, do, served, sign_in
from tests.workflow_support import open_case
from tests.workspace_support import AGENT, MANAGER, OTHER_AGENT

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)
__all__ = ["served"]  # the module's server and browser (test_workspace_browser's fixture)


async def _closing(page: Page) -> None:
    await page.context.close()


async def test_an_agent_opens_a_case_for_a_customer_found_by_name(
    served: Served, tmp_path: Path
) -> None:
    name = f"深圳浏览器测试有限公司 {uuid.uuid4().hex[:4]}"
    customer = await known_customer(served.stack, name)
    page = await sign_in(served, AGENT)
    try:
        await page.get_by_role("link", name="新建工单").click()
        await page.get_by_placeholder("租户 ID、名称或邮箱").fill("深圳浏览器")
        await page.get_by_role("button", name="查找").click()
        found = page.get_by_test_id("found").locator("tr", has_text=name)
        await found.get_by_role("link", name="使用").click()
        form = page.get_by_test_id("new-case")
        await expect(form.locator('[name="tenant_id"]')).to_have_value(customer.tenant_id)
        await expect(form.locator('[name="email"]')).to_have_value(customer.email)
        await form.locator('[name="category"]').select_option("unexpected-charge")
        await form.locator('[name="description"]').fill("来电：12月账单多收了一台虚拟机的费用。")
        await form.locator('[name="amount"]').fill("1200.00")
        shot = tmp_path / "new-case.png"
        await page.screenshot(path=shot, full_page=True)
        if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
            shutil.copyfile(shot, Path(target) / "workspace-new-case.png")
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await form.get_by_role("button", name="创建工单").click()
        await expect(page.get_by_test_id("customer")).to_contain_text(name, timeout=WAIT_MS)
        await expect(page.get_by_test_id("status")).to_have_text("处理中")
        await expect(page.get_by_role("status")).to_contain_text("工单已创建")
        case_id = await page.get_by_test_id("case-id").inner_text()
        view = await served.stack.service.cases.show(case_id)
        assert view.opened_by == AGENT and view.details.customer == customer
    finally:
        await _closing(page)


async def test_a_bad_field_is_refused_beside_it(served: Served) -> None:
    page = await sign_in(served, AGENT)
    tenant_id = str(uuid.uuid4())
    try:
        await page.goto(f"{served.url}/cases/new")
        form = page.get_by_test_id("new-case")
        await form.locator('[name="tenant_id"]').fill(tenant_id[:-1])
        await form.locator('[name="name"]').fill("广州短租户有限公司")
        await form.locator('[name="email"]').fill("ap@short.example.cn")
        await form.locator('[name="category"]').select_option("billing-question")
        await form.locator('[name="description"]').fill("租户 ID 少了一位")
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await form.get_by_role("button", name="创建工单").click()
        problem = page.locator('[data-problem="tenant_id"]')
        await expect(problem).to_contain_text("租户 ID (tenant_id): 必须是租户 ID")
        await expect(page.get_by_test_id("problems")).to_contain_text("工单未创建")
        await expect(form.locator('[name="name"]')).to_have_value("广州短租户有限公司")
        assert cases_of(served.stack, tenant_id[:-1]) == []
    finally:
        await _closing(page)


async def test_a_manager_reassigns_through_the_picker_and_a_forged_address_changes_nothing(
    served: Served,
) -> None:
    data = open_case(owner=AGENT)
    await served.stack.service.cases.open(data)
    page = await sign_in(served, MANAGER)
    try:
        await page.goto(f"{served.url}/cases/{data.case_id}")
        picker = page.locator('details[data-action="assign"] select[name="agent"]')
        assert await picker.locator(f'option[value="{OTHER_AGENT}"]').count() == 1
        await do(page, "assign", agent=OTHER_AGENT)
        await expect(page.get_by_test_id("owner")).to_have_text(OTHER_AGENT)
        token = await page.locator('input[name="csrf_token"]').first.input_value()
        answer = await page.request.post(
            f"{served.url}/cases/{data.case_id}/actions/assign",
            form={"agent": "agent.wnag@partner.example.cn", "csrf_token": token},
            max_redirects=0,
        )
        assert answer.status == 409 and "不是工作台在职的客服或经理" in await answer.text()
        assert (await served.stack.service.cases.show(data.case_id)).owner == OTHER_AGENT
    finally:
        await _closing(page)


async def test_an_admin_disables_someone_whose_open_page_stops_working(served: Served) -> None:
    admin_email = await account(served.stack, Role.ADMIN, name="钱管理员")
    leaver = await account(served.stack, Role.AGENT, name="周离职")
    theirs = await sign_in(served, leaver)
    admin = await sign_in(served, admin_email)
    try:
        await expect(admin.get_by_test_id("accounts")).to_be_visible()  # an admin lands there
        row = admin.locator(f'tr[data-email="{leaver}"]')
        async with admin.expect_navigation(timeout=WAIT_MS):
            await row.get_by_role("button", name="停用").click()
        await expect(admin.get_by_role("status")).to_contain_text("已停用")
        await expect(row).to_contain_text("已停用")
        await theirs.reload()
        await expect(theirs.locator('input[name="password"]')).to_be_visible(timeout=WAIT_MS)
        assert "/login" in theirs.url
    finally:
        await _closing(theirs)
        await _closing(admin)


@pytest.mark.parametrize("who", [AGENT, MANAGER])
async def test_no_one_but_an_admin_opens_the_people(served: Served, who: str) -> None:
    page = await sign_in(served, who)
    try:
        assert await page.get_by_role("link", name="人员").count() == 0
        answer = await page.goto(f"{served.url}/admin/users")
        assert answer is not None and answer.status == 403
        await expect(page.get_by_test_id("error")).to_contain_text("无权")
    finally:
        await _closing(page)
