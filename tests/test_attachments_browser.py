"""A case's attachment in a real browser (Playwright driving Debian's Chromium): the customer
answers our question with a PDF through the real inbound service; the agent opens the case,
clicks the file's name and gets the very bytes, under its Chinese name; the 21Vianet request
links it too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect
from temporalio.testing import WorkflowEnvironment

from core.models import Escalate, Severity
from tests.test_attachment_downloads import INBOUND, PDF, case_with_files, sha
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
    folder = tmp_path_factory.mktemp("attachments-browser")
    attachments = folder / "attachments"
    async with (
        workspace(dev_env, folder, attachments_dir=attachments, **INBOUND) as stack,
        serving(stack) as served,
    ):
        yield served


async def test_an_agent_downloads_the_customers_pdf(served: Served, tmp_path: Path) -> None:
    stack = served.stack
    case_id = await case_with_files(stack, ("发票.pdf", "application/pdf", PDF))
    escalate = Escalate(reason="计量数据与账单不符。", severity=Severity.B, by=AGENT)
    await stack.service.cases.act(case_id, escalate)
    page = await sign_in(served, AGENT)
    try:
        await page.goto(f"{served.url}/cases/{case_id}")
        link = page.get_by_test_id("attachments").get_by_role("link", name="发票.pdf")
        await expect(link).to_be_visible(timeout=WAIT_MS)
        async with page.expect_download(timeout=WAIT_MS) as started:
            await link.click()
        download = await started.value
        assert download.suggested_filename == "发票.pdf"
        saved = tmp_path / "saved.pdf"
        await download.save_as(saved)
        assert saved.read_bytes() == PDF
        # beside the 21Vianet request, for the portal: the same file
        named = page.get_by_test_id("request-files").get_by_role("link", name="发票.pdf")
        href = f"/cases/{case_id}/attachments/{sha(PDF)}"
        await expect(named).to_have_attribute("href", href)
        assert page.url.endswith(f"/cases/{case_id}")  # the download left the page as it was
    finally:
        await page.context.close()
