"""Merging a duplicate and linking cases in a real browser (Playwright driving Debian's Chromium),
on the real stack: an agent merges a duplicate through its case page, picking the target among
the customer's open cases (another customer's is not offered); the duplicate is merged, the
customer has exactly one letter in their language naming the target, the target's page shows the
duplicate's emails, files and timeline, and the customer's later reply on the duplicate's thread
reaches the target. The same merge again changes nothing; into itself, into a merged case or
another customer's case is refused naming `into` (also from a form sent by hand; finance may not
merge). An agent links two cases, both pages show it, a manager unlinks them. The CLI merges and
links too.

WORKSPACE_SCREENSHOTS=docs also writes the merge form and the duplicate as the target shows it
there (docs/workspace-merge-form.png, docs/workspace-merged.png)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from core.models import CaseForm, CaseStatus, Category, EventKind, Locale, MergeCase
from intake.mail import Attachment
from service.attachments import Direction
from service.errors import Refused
from service.inbound import Outcome
from tests.clock_support import eventually
from tests.test_inbound import CUSTOMER, THREAD_SECRET, reply_to
from tests.test_temporal_ui import CHROMIUM
from tests.test_workspace_browser import Served, do, serving, sign_in
from tests.workspace_support import AGENT, FINANCE, MANAGER, act, signed_in, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("merge")
    threads = {
        "inbound_domain": "reply.partner.example.cn",
        "email_thread_secret": SecretStr(THREAD_SECRET),
        "attachments_dir": folder / "attachments",
    }
    async with workspace(dev_env, folder, **threads) as stack, serving(stack) as served:
        yield served


async def _open(served: Served, tenant: str, description: str, locale: Locale) -> str:
    cases = served.stack.service.cases
    form = CaseForm(
        tenant_id=tenant,
        name="上海云帆科技有限公司",
        email=CUSTOMER,
        locale=locale,
        category=Category.INVOICE_DISPUTE,
        description=description,
        amount=Decimal("1200.00"),
        owner=AGENT,
        opened_by=AGENT,
    )
    opened = await cases.open(cases.prepare(form))
    await eventually(  # its row is in the database: the pickers read it there
        lambda: bool(served.stack.service.links._statuses([opened.case_id])),
        f"case {opened.case_id} saved",
    )
    return opened.case_id


def _letters(served: Served, template: str, case_id: str) -> list[EmailMessage]:
    found = []
    for path in sorted(served.stack.settings.outbox_dir.glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if message["X-Category"] == template and case_id in str(message["Subject"]):
            assert isinstance(message, EmailMessage)
            found.append(message)
    return found


async def test_an_agent_merges_a_duplicate_and_its_customer_is_told_once(served: Served) -> None:
    service = served.stack.service
    tenant = str(uuid.uuid4())
    target = await _open(served, tenant, "十月发票多收了一台已删除的虚拟机。", Locale.ZH_CN)
    duplicate = await _open(served, tenant, "十月账单重复扣费，请核实。", Locale.ZH_CN)
    stranger = await _open(served, str(uuid.uuid4()), "另一家客户的问题。", Locale.ZH_CN)
    # the duplicate had the customer's email and a file before it was merged
    await eventually(lambda: bool(_letters(served, "case_acknowledged", duplicate)), "ack")
    [ack] = _letters(served, "case_acknowledged", duplicate)
    first = await service.inbound.receive(reply_to(ack, "账单截图稍后补发。"))
    assert first.outcome is Outcome.REPLIED and first.case_id == duplicate
    receipt = Attachment("扣费截图.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    await service.attachments.keep(duplicate, Direction.INBOUND, "test-source", [receipt])

    page = await sign_in(served, AGENT)
    try:
        await page.goto(f"{served.url}/cases/{duplicate}")
        picker = page.locator('details[data-action="merge"] select[name="into"]')
        offered = await picker.locator("option").evaluate_all("os => os.map(o => o.value)")
        assert target in offered and stranger not in offered and duplicate not in offered
        if shots := os.environ.get("WORKSPACE_SCREENSHOTS"):
            form = page.locator('details[data-action="merge"]')
            await form.locator("summary").click()
            await form.screenshot(path=str(Path(shots) / "workspace-merge-form.png"))
        await do(page, "merge", into=target)
        await expect(page.locator("p.done")).to_contain_text("合并")
        await expect(page.get_by_test_id("status")).to_have_text("已合并")
        await expect(page.get_by_test_id("merged-into")).to_have_text(target)
        await expect(page.locator('details[data-action="merge"]')).to_have_count(0)

        await page.get_by_test_id("merged-into").locator("a").click()
        await expect(page.get_by_test_id("case-id")).to_have_text(target)
        merged = page.get_by_test_id("merged-case")
        await expect(merged).to_contain_text(duplicate)
        await expect(merged).to_contain_text("扣费截图.png")
        await expect(merged.locator("li.event-customer-replied")).to_contain_text("账单截图")
        await expect(merged.locator("li.event-merged")).to_contain_text("已合并到其他工单")
        await expect(merged.locator("li.event-merged a")).to_have_text(target)
        await expect(page.locator("table.thread")).to_contain_text(duplicate)  # its emails
        await expect(page.locator("ol.timeline li.event-merged-in").first).to_contain_text(
            duplicate
        )
        if shots := os.environ.get("WORKSPACE_SCREENSHOTS"):
            await merged.screenshot(path=str(Path(shots) / "workspace-merged.png"))
    finally:
        await page.context.close()

    await eventually(lambda: bool(_letters(served, "case_merged", duplicate)), "the letter")
    [letter] = _letters(served, "case_merged", duplicate)
    assert letter["To"] == CUSTOMER and target in str(letter["Subject"])
    body = letter.get_body(preferencelist=("plain",))
    assert body is not None and f"将在工单 {target} 中继续处理" in body.get_content()
    assert letter["In-Reply-To"] == ack["In-Reply-To"]  # in the duplicate's thread

    # the same merge again changes nothing; the wrong ones are refused naming the field
    again = await service.cases.merge(duplicate, MergeCase(into=target, by=AGENT))
    assert again.status is CaseStatus.MERGED and again.merged_into == target
    for into, words in ((target, "itself"), (duplicate, "is merged"), (stranger, "another")):
        with pytest.raises(Refused, match=f"^into: .*{words}"):
            await service.cases.merge(target, MergeCase(into=into, by=AGENT))
    view = await service.cases.show(target)
    assert view.status is CaseStatus.OPEN and view.merged_cases == [duplicate]
    assert view.details.disputed_amount == Decimal("1200.00")  # its own money, nothing added

    # the customer answers the merged duplicate's thread: the target has it
    later = await service.inbound.receive(reply_to(ack, "补充：扣费发生在 10 月 3 日。"))
    assert later.outcome is Outcome.REPLIED and later.case_id == target
    view = await service.cases.show(target)
    replied = [e.text for e in view.timeline if e.kind is EventKind.CUSTOMER_REPLIED]
    assert any("10 月 3 日" in text for text in replied)
    await asyncio.sleep(0.5)  # nothing more is on its way to the customer
    assert len(_letters(served, "case_merged", duplicate)) == 1


async def test_linked_cases_show_on_both_pages_and_a_manager_unlinks_them(
    served: Served,
) -> None:
    tenant = str(uuid.uuid4())
    one = await _open(served, tenant, "发票抬头有误。", Locale.EN_US)
    other = await _open(served, tenant, "发票税号有误。", Locale.EN_US)
    page = await sign_in(served, AGENT)
    try:
        await page.goto(f"{served.url}/cases/{one}")
        await expect(page.locator('details[data-action="unlink"]')).to_have_count(0)
        await do(page, "link", other=other)
        await expect(page.get_by_test_id("related")).to_contain_text(other)
        await expect(page.locator("ol.timeline li.event-case-linked").first).to_contain_text(other)
        await page.get_by_test_id("related").get_by_role("link", name=other).click()
        await expect(page.get_by_test_id("related")).to_contain_text(one)
    finally:
        await page.context.close()
    manager = await sign_in(served, MANAGER)
    try:
        await manager.goto(f"{served.url}/cases/{other}")
        await do(manager, "unlink", other=one)
        await expect(manager.get_by_test_id("related")).to_have_count(0)
        await manager.goto(f"{served.url}/cases/{one}")
        await expect(manager.get_by_test_id("related")).to_have_count(0)
        await expect(manager.locator("ol.timeline li.event-case-unlinked").first).to_contain_text(
            other
        )
    finally:
        await manager.context.close()
    letters = [p for p in served.stack.settings.outbox_dir.glob("*.eml") if one in p.name]
    assert not [p for p in letters if b"case-linked" in p.read_bytes()]  # no letter


async def test_the_cli_merges_and_links(served: Served, dev_env: WorkflowEnvironment) -> None:
    settings = served.stack.settings
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TASK_QUEUE": settings.task_queue,
        "DATABASE_URL": settings.database_url,
    }

    async def run(*args: str) -> tuple[int, str]:
        done = await asyncio.to_thread(CliRunner().invoke, starter.app, list(args), env=env)
        return done.exit_code, done.output

    tenant = str(uuid.uuid4())
    target = await _open(served, tenant, "退款申请。", Locale.EN_US)
    duplicate = await _open(served, tenant, "退款申请（重复）。", Locale.EN_US)
    code, output = await run("case", "merge", duplicate, "--into", duplicate)
    assert code == 1 and "into: a case cannot merge into itself" in output
    code, output = await run("case", "link", target, duplicate)
    assert code == 0 and duplicate in output, output
    code, output = await run("case", "merge", duplicate, "--into", target)
    assert code == 0 and "merged" in output and target in output, output
    code, output = await run("case", "unlink", duplicate, target)
    assert code == 0 and target not in output.split("Cases linked to")[-1], output
    await eventually(lambda: bool(_letters(served, "case_merged", duplicate)), "the letter")
    [letter] = _letters(served, "case_merged", duplicate)
    assert "Your request continues under case" in str(letter["Subject"])  # their language


async def test_a_forged_merge_is_refused_and_finance_may_not_merge(served: Served) -> None:
    """A form sent by hand: another customer's case is refused naming `into`, nothing changed;
    a role without the action is answered 403."""
    tenant = str(uuid.uuid4())
    duplicate = await _open(served, tenant, "重复的问题。", Locale.ZH_CN)
    stranger = await _open(served, str(uuid.uuid4()), "另一家客户。", Locale.ZH_CN)
    page = f"/cases/{duplicate}"
    agent = await signed_in(served.stack.app, AGENT)
    refused = await act(agent, page, "merge", into=stranger)
    assert refused.status_code == 409 and "into: case" in refused.text
    assert "another customer" in refused.text
    bad = await act(agent, page, "merge", into="not a case id!")
    assert bad.status_code == 422 and 'data-problem="into"' in bad.text
    assert "须为工单编号：请从列表中选择工单" in bad.text  # the agent reads zh-CN
    finance = await signed_in(served.stack.app, FINANCE)
    assert (await act(finance, page, "merge", into=stranger)).status_code == 403
    assert (await act(finance, page, "link", other=stranger)).status_code == 403
    view = await served.stack.service.cases.show(duplicate)
    assert view.status is CaseStatus.OPEN and view.merged_into is None


async def test_two_merges_of_one_duplicate_at_once_one_wins(served: Served) -> None:
    """Two people merge the same duplicate into two cases at the same moment: one merge is
    taken, the other refused; only that target lists it, and the customer has one letter."""
    service = served.stack.service
    tenant = str(uuid.uuid4())
    first = await _open(served, tenant, "问题一。", Locale.ZH_CN)
    second = await _open(served, tenant, "问题二。", Locale.ZH_CN)
    duplicate = await _open(served, tenant, "问题一（重复）。", Locale.ZH_CN)
    answers = await asyncio.gather(
        service.cases.merge(duplicate, MergeCase(into=first, by=AGENT)),
        service.cases.merge(duplicate, MergeCase(into=second, by=MANAGER)),
        return_exceptions=True,
    )
    refused = [a for a in answers if isinstance(a, Refused)]
    assert len(refused) == 1 and "merged" in str(refused[0]), answers
    view = await service.cases.show(duplicate)
    into = view.merged_into
    assert view.status is CaseStatus.MERGED and into in (first, second)
    other = second if into == first else first
    assert (await service.cases.show(into)).merged_cases == [duplicate]
    assert (await service.cases.show(other)).merged_cases == []
    await eventually(
        lambda: bool(_letters(served, "case_merged", duplicate)), "the letter", seconds=90
    )  # a loaded suite
    assert len(_letters(served, "case_merged", duplicate)) == 1
