"""The pages a staff alert links to, on a phone's screen (390×844, touch): Playwright driving
Debian's Chromium. A manager opens an invoice's link signed out, signs in, lands back on it and
approves the suspension it asks for; an agent opens a case's link and acts on it. Neither page
scrolls sideways, and each action's button is on the screen and big enough to tap.

WORKSPACE_SCREENSHOTS=docs also writes the approval's screenshot there (docs/phone-approval.png,
docs/production.md's picture)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright._impl._api_structures import Clip, ViewportSize
from playwright.async_api import Page, expect
from temporalio.testing import WorkflowEnvironment

from chaos.harness import FAST_POLICY
from tests.clock_support import eventually
from tests.test_temporal_ui import CHROMIUM, WAIT_MS
from tests.test_workspace_browser import Served, serving
from tests.workflow_support import billing_failure, open_case
from tests.workspace_support import AGENT, MANAGER, PASSWORD, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)
PHONE = ViewportSize(width=390, height=844)
TAP = 40  # px: the smallest button a thumb hits (Apple asks 44 pt, Material 48 dp of target)


def approval_policy(folder: Path) -> Path:
    """The chaos run's day-0 policy whose suspension waits for a manager."""
    policy = folder / "approval.toml"
    policy.write_text(
        FAST_POLICY.replace('action = "suspend"', 'action = "suspend"\napproval = "manager"')
    )
    return policy


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("phone")
    async with (
        workspace(dev_env, folder, collections_policy_file=approval_policy(folder)) as stack,
        serving(stack) as served,
    ):
        yield served


async def phone(served: Served, link: str, email: str) -> Page:
    """A phone opening an alert's link signed out: the sign-in page, then the link's page."""
    context = await served.browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    page = await context.new_page()
    await page.goto(link)
    await page.locator('input[name="email"]').fill(email)
    await page.locator('input[name="password"]').fill(PASSWORD)
    await page.locator("form[action='/login'] button").tap()
    await expect(page.get_by_test_id("person")).to_be_visible(timeout=WAIT_MS)
    assert page.url == link
    return page


async def fits_the_screen(page: Page) -> None:
    """No sideways scrolling: nothing is wider than the phone."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px screen"


async def open_action(page: Page, action: str) -> None:
    """The action's form opened with a tap, its summary and button big enough and on screen."""
    form = page.locator(f'details[data-action="{action}"]')
    summary = form.locator("summary")
    await summary.scroll_into_view_if_needed()
    await summary.tap()
    button = form.locator("button[type=submit]")
    await button.scroll_into_view_if_needed()
    for target in (summary, button):
        box = await target.bounding_box()
        assert box is not None
        assert box["height"] >= TAP and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]


async def send(page: Page, action: str, **fields: str) -> None:
    form = page.locator(f'details[data-action="{action}"]')
    for name, value in fields.items():
        await form.locator(f'[name="{name}"]').fill(value)
    async with page.expect_navigation(timeout=WAIT_MS * 2):
        await form.locator("button[type=submit]").tap()


async def test_a_manager_approves_a_suspension_from_the_alert_s_link_on_a_phone(
    served: Served, tmp_path: Path
) -> None:
    failure = billing_failure(amount="5000.00")
    service = served.stack.service
    await service.collections.report_failure(failure)

    async def asked() -> bool:
        return (await service.collections.show(failure.invoice_id)).approval_asked_at is not None

    await eventually(asked, "the suspension waits for a manager")
    page = await phone(served, f"{served.url}/collections/{failure.invoice_id}", MANAGER)
    try:
        await expect(page.get_by_test_id("invoice-id")).to_have_text(failure.invoice_id)
        await fits_the_screen(page)
        await open_action(page, "approve-suspension")
        await page.locator('details[data-action="approve-suspension"] textarea').fill(
            "多次催缴未果，批准暂停"
        )
        shot = tmp_path / "phone-approval.png"  # from the top to the approval's button
        button = page.locator('details[data-action="approve-suspension"] button[type=submit]')
        box = await button.bounding_box()
        assert box is not None
        top = await page.evaluate("window.scrollY")
        bottom = top + box["y"] + box["height"] + 12
        clip = Clip(x=0, y=0, width=PHONE["width"], height=bottom)
        await page.screenshot(path=shot, full_page=True, clip=clip)
        assert shot.stat().st_size > 20_000
        if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
            shutil.copyfile(shot, Path(target) / "phone-approval.png")
        await send(page, "approve-suspension")
        await expect(page.get_by_role("status")).to_be_visible()
        await fits_the_screen(page)
        view = await service.collections.show(failure.invoice_id)
        assert view.approval_asked_at is None
        approved = [e for e in view.timeline if e.kind.value == "suspension-approved"]
        assert [(e.actor, e.text) for e in approved] == [(MANAGER, "多次催缴未果，批准暂停")]
    finally:
        await page.context.close()


async def test_an_agent_acts_on_a_case_from_its_link_on_a_phone(served: Served) -> None:
    data = open_case(owner=AGENT)
    await served.stack.service.cases.open(data)
    page = await phone(served, f"{served.url}/cases/{data.case_id}", AGENT)
    try:
        await expect(page.get_by_test_id("case-id")).to_have_text(data.case_id)
        await fits_the_screen(page)
        await open_action(page, "request-info")
        await send(page, "request-info", question="请提供删除虚拟机的截图")
        await expect(page.get_by_test_id("status")).to_have_text("等待客户")
        await fits_the_screen(page)
    finally:
        await page.context.close()
