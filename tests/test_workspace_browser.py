"""The workspace in a real browser: Playwright driving Debian's Chromium (fonts-noto-cjk renders
the Chinese), one server and one browser for the module. Each role signs in; a case goes from open
to closed through the pages; a refusal shows beside its form; a forbidden action and a form
without its CSRF token are refused; a signed-out session's cookie opens nothing; markup a customer
wrote stays text.

WORKSPACE_SCREENSHOTS=docs also writes the queue's and the case's screenshots there (for
docs/workspace.md)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect
from temporalio.testing import WorkflowEnvironment

from core.models import CaseStatus, Priority
from tests.clock_support import eventually
from tests.test_temporal_ui import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, free_port
from tests.workflow_support import open_case
from tests.workspace_support import AGENT, FINANCE, MANAGER, PASSWORD, Stack, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)
HOSTILE_NAME = '<img src=x onerror="window.pwned=1">上海恶意科技'
HOSTILE_TEXT = "<script>window.pwned=2</script><b>bold?</b> {{ 7*7 }}"


@dataclass
class Served:
    stack: Stack
    url: str
    browser: Browser


@asynccontextmanager
async def serving(stack: Stack) -> AsyncIterator[Served]:
    """The stack's workspace on a free port of 127.0.0.1, and a headless Chromium."""
    port = free_port()
    config = uvicorn.Config(
        stack.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, "the workspace listens")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield Served(stack, f"http://127.0.0.1:{port}", browser)
        finally:
            await browser.close()
            server.should_exit = True
            await task


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("browser")
    async with workspace(dev_env, folder) as stack, serving(stack) as served:
        yield served


async def sign_in(served: Served, email: str, password: str = PASSWORD) -> Page:
    context = await served.browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{served.url}/")
    await page.locator('input[name="email"]').fill(email)
    await page.locator('input[name="password"]').fill(password)
    await page.locator("form[action='/login'] button").click()
    await expect(page.get_by_test_id("person")).to_be_visible(timeout=WAIT_MS)
    return page


async def do(page: Page, action: str, **fields: str) -> None:
    """Open an action's form, fill it, send it, and wait for the page it answers with."""
    form = page.locator(f'details[data-action="{action}"]')
    if await form.get_attribute("open") is None:
        await form.locator("summary").click()
    for name, value in fields.items():
        field = form.locator(f'[name="{name}"]')
        if await field.evaluate("e => e.tagName") == "SELECT":
            await field.select_option(value)
        else:
            await field.fill(value)
    async with page.expect_navigation(timeout=WAIT_MS * 2):
        await form.locator("button[type=submit]").click()


@pytest.mark.parametrize(
    ("email", "role", "lands_on"),
    [
        (AGENT, "客服", "/queues/mine"),
        (MANAGER, "经理", "/queues/mine"),
        (FINANCE, "finance", "/payables"),
    ],
)
async def test_each_role_signs_in(served: Served, email: str, role: str, lands_on: str) -> None:
    page = await sign_in(served, email)
    try:
        await expect(page.get_by_test_id("person")).to_contain_text(role)
        assert page.url.endswith(lands_on)
        cookies = await page.context.cookies()
        session = next(c for c in cookies if c["name"] == "workspace_session")
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        await (
            page.get_by_role("button", name="退出登录")
            .or_(page.get_by_role("button", name="Sign out"))
            .click()
        )
        await expect(page.locator('input[name="password"]')).to_be_visible()
    finally:
        await page.context.close()


async def test_a_case_from_open_to_closed_through_the_pages(served: Served, tmp_path: Path) -> None:
    data = open_case(owner=None)
    await served.stack.service.cases.open(data)
    page = await sign_in(served, AGENT)
    try:
        await page.get_by_role("link", name="未分配").first.click()
        await page.get_by_role("link", name=data.case_id).click()
        await expect(page.get_by_test_id("owner")).to_have_text("未分配")
        await do(page, "take")
        await expect(page.get_by_test_id("owner")).to_have_text(AGENT)
        await do(page, "note", text="Meter data shows usage until 30 Sep")
        await do(page, "request-info", question="Please send the deletion confirmation")
        await expect(page.get_by_test_id("status")).to_have_text("等待客户")
        await do(page, "customer-reply", text="Deleted on 28 Sep, screenshot attached")
        await expect(page.get_by_test_id("status")).to_have_text("处理中")
        await do(page, "escalate", reason="Metering error on 21Vianet's side", severity="B")
        await expect(page.get_by_test_id("status")).to_have_text("待提交世纪互联")
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        await page.get_by_role("button", name="复制请求").click()
        copied = await page.evaluate("navigator.clipboard.readText()")
        assert data.case_id in copied and "Metering error" in copied
        await do(page, "vianet-ticket", ticket_number="2611240042")
        await expect(page.get_by_test_id("ticket")).to_have_text("2611240042")
        await expect(page.get_by_test_id("status")).to_have_text("等待世纪互联")
        shot = tmp_path / "case.png"
        await page.screenshot(path=shot)
        assert shot.stat().st_size > 20_000
        if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
            shutil.copyfile(shot, Path(target) / "workspace-case.png")
        await do(page, "vianet-response", text="Credit note CN-88 issued to the partner")
        await do(
            page, "resolve", outcome="explained", summary="The VM was billed until it was deleted"
        )
        await expect(page.get_by_test_id("status")).to_have_text("已解决")
        assert await page.locator("a.temporal").get_attribute("href") == (
            f"http://localhost:8233/namespaces/default/workflows/case-{data.case_id}"
        )
        await do(page, "confirm")
        await expect(page.get_by_test_id("status")).to_have_text("已关闭")
        view = await served.stack.service.cases.show(data.case_id)
        assert view.status is CaseStatus.CLOSED
        assert AGENT in {event.actor for event in view.timeline}
        if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
            await _queue_screenshot(served, page, Path(target) / "workspace-queue.png")
    finally:
        await page.context.close()


async def _queue_screenshot(served: Served, page: Page, path: Path) -> None:
    """A few of the agent's cases, then the queue, for docs/workspace.md."""
    for priority, amount in (
        (Priority.URGENT, "86000.00"),
        (Priority.HIGH, "12340.00"),
        (Priority.NORMAL, "0.00"),
    ):
        await served.stack.service.cases.open(
            open_case(owner=AGENT, priority=priority, amount=amount)
        )
    await page.get_by_role("link", name="我的工单").click()
    await expect(page.locator("table.list tbody tr")).to_have_count(3)
    await page.screenshot(path=path)


async def test_refused_forbidden_and_tokenless_forms_change_nothing(served: Served) -> None:
    data = open_case(owner=AGENT)
    await served.stack.service.cases.open(data)
    page = await sign_in(served, AGENT)
    try:
        await page.goto(f"{served.url}/cases/{data.case_id}")
        await do(page, "vianet-ticket", ticket_number="2611240099")
        refusal = page.locator('details[data-action="vianet-ticket"] .refusal')
        await expect(refusal).to_contain_text("仅在「待提交世纪互联」时可以")
        # a manager's action the agent's page does not offer, sent anyway with a valid token
        token = await page.locator('input[name="csrf_token"]').first.input_value()
        answer = await page.request.post(
            f"{served.url}/cases/{data.case_id}/actions/assign",
            form={"agent": "someone@partner.example.cn", "csrf_token": token},
            max_redirects=0,
        )
        assert answer.status == 403 and "无权" in await answer.text()
        # a form whose token was taken out
        note = page.locator('details[data-action="note"]')
        await note.locator("summary").click()
        await note.locator('input[name="csrf_token"]').evaluate("e => e.remove()")
        await note.locator('[name="text"]').fill("no token")
        await note.locator("button[type=submit]").click()
        await expect(page.get_by_test_id("error")).to_contain_text("安全令牌")
        view = await served.stack.service.cases.show(data.case_id)
        assert view.owner == AGENT and "no token" not in [e.text for e in view.timeline]
        assert all(escalation.ticket_number is None for escalation in view.escalations)
    finally:
        await page.context.close()


async def test_a_signed_out_session_is_over_for_its_old_cookie(served: Served) -> None:
    """Whoever kept a copy of the cookie from before Sign out opens nothing and sends nothing."""
    data = open_case(owner=AGENT)
    await served.stack.service.cases.open(data)
    page = await sign_in(served, AGENT)
    try:
        case_page = f"{served.url}/cases/{data.case_id}"
        await page.goto(case_page)
        token = await page.locator('input[name="csrf_token"]').first.input_value()
        cookies = await page.context.cookies()
        copied = next(c["value"] for c in cookies if c["name"] == "workspace_session")

        async def put_back() -> None:  # the old cookie, as whoever copied it would
            await page.context.add_cookies(
                [{"name": "workspace_session", "value": copied, "url": served.url}]
            )

        await page.get_by_role("button", name="退出登录").click()
        await expect(page.locator('input[name="password"]')).to_be_visible()
        await put_back()
        await page.goto(case_page)
        await expect(page.locator('input[name="password"]')).to_be_visible()
        assert "/login?next=" in page.url
        await put_back()  # (the refusal above cleared it)
        note = await page.request.post(
            f"{case_page}/actions/note",
            form={"text": "after sign-out", "csrf_token": token},
            max_redirects=0,
        )
        assert note.status == 401
        view = await served.stack.service.cases.show(data.case_id)
        assert "after sign-out" not in [event.text for event in view.timeline]
    finally:
        await page.context.close()


async def test_markup_in_customer_fields_is_inert(served: Served) -> None:
    data = open_case(owner=AGENT)
    customer = data.details.customer.model_copy(update={"name": HOSTILE_NAME})
    details = data.details.model_copy(update={"customer": customer, "description": HOSTILE_TEXT})
    data = data.model_copy(update={"details": details})
    await served.stack.service.cases.open(data)
    page = await sign_in(served, AGENT)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    try:
        await page.goto(f"{served.url}/queues/mine")
        await expect(page.get_by_text(HOSTILE_NAME)).to_be_visible()
        await page.goto(f"{served.url}/cases/{data.case_id}")
        await do(page, "customer-reply", text=HOSTILE_TEXT)
        await expect(page.get_by_test_id("description")).to_have_text(HOSTILE_TEXT)
        await expect(page.get_by_test_id("customer")).to_contain_text(HOSTILE_NAME)
        assert await page.evaluate("window.pwned") is None
        # no customer tag became an element
        assert await page.locator("b", has_text="bold?").count() == 0
        assert await page.locator("main img").count() == 0
        assert dialogs == []
    finally:
        await page.context.close()
