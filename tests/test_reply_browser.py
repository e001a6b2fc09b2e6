"""A public reply in a real browser (Playwright driving Debian's Chromium): a manager keeps a canned
reply (an unknown placeholder refused beside the form, naming it); an agent picks it on a case,
edits it, attaches a PDF and sends it; the outbox has the email in the case's thread with the PDF,
the first response is met and no clock paused; a file of a type not taken is refused in the
composer, nothing sent; the timeline shows the reply apart from an internal note.

WORKSPACE_SCREENSHOTS=docs also writes the composer's screenshot there (for docs/workspace.md)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import FilePayload, expect
from temporalio.testing import WorkflowEnvironment

from core.models import CaseStatus, EventKind
from tests.clock_support import eventually
from tests.test_temporal_ui import CHROMIUM, WAIT_MS
from tests.test_workspace_browser import Served, do, serving, sign_in
from tests.workflow_support import open_case
from tests.workspace_support import AGENT, MANAGER, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("reply")
    async with workspace(dev_env, folder) as stack, serving(stack) as served:
        yield served


def _replies(outbox: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(outbox.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["X-Category"] == "case_reply":
            assert isinstance(message, EmailMessage)
            found.append(message)
    return found


async def test_a_manager_keeps_a_canned_reply_and_an_agent_sends_it_with_a_pdf(
    served: Served, tmp_path: Path
) -> None:
    data = open_case(owner=AGENT)
    await served.stack.service.cases.open(data)
    manager = await sign_in(served, MANAGER)
    try:
        await manager.get_by_role("link", name="快捷回复").click()
        form = manager.get_by_test_id("macro-form")
        await form.locator('[name="name"]').fill("贷项通知单已开具")
        await form.locator('[name="locale"]').select_option("zh-CN")
        text = (
            "{customer_name}，您好：\n工单 {case_id} 的贷项通知单已开具，金额 {amount}。{signature}"
        )
        await form.locator('[name="text"]').fill(text)
        async with manager.expect_navigation(timeout=WAIT_MS):
            await form.locator("button[type=submit]").click()
        await expect(form.locator(".refusal")).to_contain_text("{signature}")
        await form.locator('[name="text"]').fill(text.replace("{signature}", "\n{agent_name}"))
        async with manager.expect_navigation(timeout=WAIT_MS):
            await form.locator("button[type=submit]").click()
        await expect(manager.locator("p.done")).to_contain_text("已添加快捷回复")
        await expect(manager.get_by_test_id("macros")).to_contain_text("贷项通知单已开具")
    finally:
        await manager.context.close()

    page = await sign_in(served, AGENT)
    try:
        await page.goto(f"{served.url}/cases/{data.case_id}")
        composer = page.get_by_test_id("composer")
        await expect(composer.locator("h2")).to_have_text("回复客户 (客户可见)")
        await expect(page.locator('details[data-action="note"] summary')).to_have_text(
            "内部备注 (仅员工可见)"
        )
        async with page.expect_navigation(timeout=WAIT_MS):  # the picker sends itself
            await composer.locator('select[name="macro"]').select_option(
                label="贷项通知单已开具 · 简体中文"
            )
        textarea = composer.locator('textarea[name="text"]')
        filled = await textarea.input_value()
        assert filled.startswith(data.details.customer.name) and data.case_id in filled
        assert "{" not in filled and "¥12,340.00" in filled
        await textarea.fill(filled + "\n请查收附件。")
        files = composer.locator('input[type="file"]')
        pdf = tmp_path / "贷项通知单 CN-88.pdf"
        pdf.write_bytes(PDF)
        await files.set_input_files(str(pdf))
        if target := os.environ.get("WORKSPACE_SCREENSHOTS"):
            await composer.screenshot(path=Path(target) / "reply-composer.png")
        # a file of a type not taken: refused in the composer, nothing sent
        script = FilePayload(name="run.sh", mimeType="application/x-sh", buffer=b"rm -rf /")
        await files.set_input_files(script)
        async with page.expect_navigation(timeout=WAIT_MS):
            await composer.locator("button.send").click()
        await expect(composer.locator(".refusal")).to_contain_text("run.sh")
        assert await textarea.input_value() == filled + "\n请查收附件。"  # kept to send again
        assert _replies(served.stack.settings.outbox_dir) == []
        await files.set_input_files(str(pdf))
        async with page.expect_navigation(timeout=WAIT_MS):
            await composer.locator("button.send").click()
        await expect(page.locator("p.done")).to_contain_text("回复已发送")
        replied = page.locator("ol.timeline li.event-replied")
        await expect(replied).to_contain_text("客户可见")
        await expect(replied).to_contain_text(pdf.name)
        await do(page, "note", text="内部：财务已确认")
        await expect(page.locator("ol.timeline li.event-note").first).to_contain_text("仅员工可见")
        await expect(page.get_by_test_id("attachments")).to_contain_text(pdf.name)
    finally:
        await page.context.close()

    outbox = served.stack.settings.outbox_dir
    await eventually(lambda: bool(_replies(outbox)), "the reply in the outbox")
    [sent] = _replies(outbox)
    assert sent["To"] == str(data.details.customer.email)
    assert sent["Subject"].startswith(f"回复：【工单 {data.case_id}】")
    ack = [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in outbox.glob("*.eml")
        if b"case_acknowledged" in p.read_bytes()
    ]
    assert ack and sent["In-Reply-To"] == ack[0]["In-Reply-To"]  # the case's thread
    assert sent["References"] and sent["Message-ID"] != ack[0]["Message-ID"]
    [attached] = list(sent.iter_attachments())
    assert attached.get_filename() == pdf.name and attached.get_content() == PDF
    body = sent.get_body(preferencelist=("plain",))
    assert body is not None and "请查收附件。" in body.get_content()
    view = await served.stack.service.cases.show(data.case_id)
    assert view.status is CaseStatus.OPEN
    first, resolution = view.sla
    assert first.met_at is not None and not resolution.paused  # met, and nothing paused
    kinds = [event.kind for event in view.timeline]
    assert kinds.count(EventKind.REPLIED) == 1 and EventKind.NOTE in kinds


async def test_a_closed_case_offers_no_reply_and_a_sent_form_is_refused(served: Served) -> None:
    data = open_case(owner=AGENT)
    await served.stack.service.cases.open(data)
    page = await sign_in(served, AGENT)
    try:
        await page.goto(f"{served.url}/cases/{data.case_id}")
        # a second tab keeps the composer open while the case is withdrawn in the first
        other = await page.context.new_page()
        await other.goto(f"{served.url}/cases/{data.case_id}")
        await other.get_by_test_id("composer").locator('textarea[name="text"]').fill("您好")
        await do(page, "withdraw", reason="duplicate")
        await expect(page.get_by_test_id("status")).to_have_text("已撤销")
        await expect(page.get_by_test_id("composer")).to_contain_text("客户再次来信时将新建工单")
        await expect(page.get_by_test_id("composer").locator("textarea")).to_have_count(0)
        async with other.expect_navigation(timeout=WAIT_MS):
            await other.get_by_test_id("composer").locator("button.send").click()
        await expect(other.get_by_test_id("composer")).to_contain_text("此工单已关闭，无法再回复")
    finally:
        await page.context.close()
    view = await served.stack.service.cases.show(data.case_id)
    assert EventKind.REPLIED not in [event.kind for event in view.timeline]
