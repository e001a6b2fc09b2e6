"""No English in the zh-CN workspace: Chromium walks every page as an agent, a manager, finance
and an admin who read Chinese, and sends each form of a case's, an invoice's and the other pages
with its fields wrong, and fails on any Latin word a page shows but for what is data.

L10N_PAGES=DIR writes each page's screenshot there, and the text of a page that failed;
WORKSPACE_SCREENSHOTS=docs writes the report page's screenshot there (docs/workspace.md's).

What a zh-CN page may show in Latin letters (the allow-list, kept short on purpose):
- data: email addresses, ids (case ids BC-…, invoice ids, GUIDs, hex digests, 21Vianet ticket
  numbers), amounts (¥4,300.00, CNY), the names of people and customers the test gave;
- a form's field code in parentheses after its Chinese label, "租户 ID (tenant_id)": the name
  the API and the CLI use, taken from the page's own form controls;
- "English" (the switch to the other language), and the words the Chinese staff use as they
  are: SLA, ID, CNY, KB/MB, PDF, the statement files' formats and encoding (CSV, XLSX, GBK, as
  the bank's export names them), and product names: Temporal (the workflow link opens its UI),
  Entra (Microsoft Entra ID, the sign-in);
- the 21Vianet request of an escalated case, a bilingual document for 21Vianet's portal.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from core.macros import MacroForm
from core.models import (
    Escalate,
    Locale,
    RecordVianetInvoice,
    Severity,
    VianetResponse,
    VianetTicket,
)
from service.errors import NotFound
from service.users import NewUser, Role, Users
from tests.test_attachment_downloads import INBOUND
from tests.test_inbox import out_of_office, stranger_mail, unpaid_invoice
from tests.test_temporal_ui import CHROMIUM, WAIT_MS
from tests.test_workspace_browser import Served, do, serving, sign_in
from tests.workspace_support import ACCOUNTS, PASSWORD, workspace

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium`"
)
# zh-CN readers of each role, with Chinese names
READERS = {
    Role.AGENT: ("l10n.agent@partner.example.cn", "周客服"),
    Role.MANAGER: ("l10n.manager@partner.example.cn", "吴经理"),
    Role.FINANCE: ("l10n.finance@partner.example.cn", "郑财务"),
    Role.ADMIN: ("l10n.admin@partner.example.cn", "冯管理员"),
}
# the names of the shared stack's accounts (tests/workspace_support.py): one is in Latin letters
NAMES = {name for name, _roles, _locale in ACCOUNTS.values()}
ALLOWED_WORDS = {"English", "SLA", "ID", "Temporal", "UI", "Entra", "CNY", "KB", "MB", "PDF"}
ALLOWED_WORDS |= {"CSV", "csv", "XLSX", "xlsx", "GBK"}  # a bank statement's file
DATA = re.compile(
    r"[\w.+-]+@[\w.-]+"  # email addresses
    r"|\b[A-Z]{2,}-[0-9A-Za-z-]+"  # ids: BC-…, INV-2026-…, F-…
    r"|\b[0-9a-fA-F-]{8,}\b"  # GUIDs, digests, ticket numbers
    r"|\b[A-Z]{3}\s?[\d,]+\.\d\d"  # amounts in another currency: USD 12.00
    r"|[\w-]+\.(?:pdf|png|eml)"  # file names the customer gave
    r"|\{\w+\}"  # a canned reply's placeholders, as the manager types them: {customer_name}
)


@dataclass
class Seeded:
    case_id: str  # escalated, answered by 21Vianet, with the customer's emails
    open_case_id: str
    invoice_id: str
    tenant_id: str
    payable: str
    macro_id: int


def stray_english(text: str, fields: set[str]) -> list[str]:
    """The Latin words of a page's text but for data, field codes and the allow-list."""
    text = DATA.sub(" ", text)
    for name in NAMES:
        text = text.replace(name, " ")
    for name in fields:
        text = text.replace(f"({name})", " ")
    return [word for word in re.findall(r"[A-Za-z]{2,}", text) if word not in ALLOWED_WORDS]


async def check(page: Page, where: str, found: dict[str, list[str]]) -> None:
    # every form's label counts, opened or not; the 21Vianet request is a bilingual document for
    # 21Vianet's portal (templates/vianet/), not a text of the workspace
    text = await page.evaluate(
        """() => {
            for (const d of document.querySelectorAll('details')) d.open = true;
            for (const e of document.querySelectorAll('.copyable pre')) e.style.display = 'none';
            return document.body.innerText;
        }"""
    )
    fields = set(
        await page.eval_on_selector_all("[name]", "els => els.map(e => e.getAttribute('name'))")
    )
    title = await page.title()
    if (folder := os.environ.get("L10N_PAGES")) and "→" not in where:  # to look at
        name = re.sub(r"[^\w-]+", "_", where)[:80]
        await page.screenshot(path=Path(folder) / f"{name}.png", full_page=True)
    if stray := stray_english(f"{title}\n{text}", fields):
        found[where] = sorted(set(stray))
        if folder := os.environ.get("L10N_PAGES"):  # what the page showed, to look at
            (Path(folder) / f"{len(found)}.txt").write_text(f"{where}\n{text}")


@pytest_asyncio.fixture(scope="module")
async def served(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("l10n-browser")
    async with (
        workspace(dev_env, folder, attachments_dir=folder / "attachments", **INBOUND) as stack,
        serving(stack) as served,
    ):
        users = Users(stack.settings)
        for role, (email, name) in READERS.items():
            new = NewUser(
                email=email,
                name=name,
                roles=[role],
                locale=Locale.ZH_CN,
                password=SecretStr(PASSWORD),
            )
            await users.add(new)
        yield served


async def seed(served: Served) -> Seeded:
    stack = served.stack
    agent = READERS[Role.AGENT][0]
    service = stack.service
    case_id = await out_of_office(stack)  # asked the customer, got an auto-reply
    failure = await unpaid_invoice(stack, case_id)
    await service.inbound.receive(stranger_mail("补充材料：十月账单", "附上对账单，请查收。"))
    await service.cases.act(case_id, Escalate(reason="计量有误", severity=Severity.B, by=agent))
    await service.cases.act(case_id, VianetTicket(ticket_number="2611240042", by=agent))
    await service.cases.act(case_id, VianetResponse(text="已开具贷项通知单", by=agent))
    other = await out_of_office(stack)
    payable = f"VN-{uuid.uuid4().hex[:8].upper()}"
    await service.vianet_invoices.record(
        RecordVianetInvoice(
            invoice_number=payable,
            amount=Decimal("128000.00"),
            due_date=date.today() + timedelta(days=20),
            recorded_by=READERS[Role.FINANCE][0],
            finance_email=READERS[Role.FINANCE][0],
            manager_email=READERS[Role.MANAGER][0],
        )
    )
    macro = await service.macros.add(
        MacroForm(name="账单说明", locale=Locale.ZH_CN, text="您好，{customer_name}。"),
        READERS[Role.MANAGER][0],
    )
    return Seeded(
        case_id,
        other,
        failure.invoice_id,
        failure.customer.tenant_id,
        payable,
        macro.id,
    )


async def refuse_each_form(page: Page, url: str, found: dict[str, list[str]]) -> None:
    """Each form of the page with fields, sent with its money fields garbage and its other
    fields empty (the browser's own checks off): the refusal the page answers with."""
    await page.goto(url)
    count = await page.locator("form[method=post]").count()
    for index in range(count):
        # the page a refusal answers with is the page again, with the same forms
        forms = page.locator("form[method=post]")
        if index >= await forms.count():
            break
        form = forms.nth(index)
        action = await form.get_attribute("action") or ""
        inputs = form.locator("input:not([type=hidden]), textarea, select")
        if action in ("/logout", "/locale") or await inputs.count() == 0:
            continue
        await form.evaluate(
            """f => {
                f.noValidate = true;
                const d = f.closest('details'); if (d) d.open = true;
                for (const e of f.querySelectorAll('input:not([type=hidden]), textarea')) {
                    if (e.type === 'file' || e.type === 'checkbox') continue;
                    e.value = e.getAttribute('inputmode') === 'decimal' ? '四千三' : '';
                }
                for (const s of f.querySelectorAll('select')) s.selectedIndex = 0;
            }"""
        )
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await form.evaluate("f => f.requestSubmit()")
        await check(page, f"{url} → {action}", found)


async def walk(
    served: Served,
    page: Page,
    role: Role,
    pages: list[str],
    forms: list[str],
    found: dict[str, list[str]],
) -> None:
    """Each page as `role` (signed in on `page`) reads it, then each form of `forms`' pages
    refused."""
    try:
        for path in pages:
            await page.goto(f"{served.url}{path}")
            await check(page, f"{role.value} {path}", found)
        for path in forms:
            await refuse_each_form(page, f"{served.url}{path}", found)
        if role in (Role.MANAGER, Role.FINANCE):  # the report's charts are drawn, in Chinese
            await page.goto(f"{served.url}/report")
            charts = page.locator("[data-testid=chart] .main-svg")
            await expect(charts.first).to_be_visible(timeout=WAIT_MS)
            assert await page.locator("[data-testid=chart]").count() == 7
            await expect(page.locator("#chart-backlog")).to_contain_text("未结工单（按时长）")
            if (target := os.environ.get("WORKSPACE_SCREENSHOTS")) and role is Role.MANAGER:
                await page.screenshot(path=Path(target) / "workspace-report.png")
    finally:
        await page.context.close()


QUEUES = ("mine", "unassigned", "sla", "waiting-on-customer", "waiting-on-21vianet")


async def test_no_english_on_any_zh_cn_page(served: Served) -> None:
    seeded = await seed(served)
    case, other = f"/cases/{seeded.case_id}", f"/cases/{seeded.open_case_id}"
    invoice = f"/collections/{seeded.invoice_id}"
    money = ["/collections", invoice, "/payables", "/report", "/finance", "/finance/credits"]
    money += ["/finance/refunds", "/fapiao"]
    agent = [
        *(f"/queues/{queue}" for queue in QUEUES),
        # the seeded invoice's rows only: the queue lists every workflow of the dev server that
        # waits for a person, other test files' customers (names in any script) among them
        f"/queues/needs-attention?q={seeded.invoice_id}",
        "/cases/new",
        case,
        other,
        *(f"/inbox?view={view}" for view in ("person", "auto-replies", "all", "handled")),
        f"/customers/{seeded.tenant_id}",
        "/collections",
        invoice,
        "/payables",
        "/no-such-page",
    ]
    found: dict[str, list[str]] = {}
    # each form once, by a role that may send it: a case's and the new case's (agent), an
    # invoice's and the canned replies' (manager), the payables' (finance), the people's (admin)
    # signed in one after the other (sign-in counts attempts by address), then four people at once
    who = {role: await sign_in(served, email) for role, (email, _name) in READERS.items()}
    await asyncio.gather(
        walk(served, who[Role.AGENT], Role.AGENT, agent, [other, "/cases/new", "/inbox"], found),
        walk(
            served,
            who[Role.MANAGER],
            Role.MANAGER,
            [*money, case, "/macros"],
            [invoice, "/macros"],
            found,
        ),
        walk(
            served,
            who[Role.FINANCE],
            Role.FINANCE,
            [*money, "/statements"],
            ["/payables", "/statements", "/fapiao"],
            found,
        ),
        walk(served, who[Role.ADMIN], Role.ADMIN, ["/admin/users"], ["/admin/users"], found),
    )
    assert found == {}, "\n".join(f"{where}: {' '.join(words)}" for where, words in found.items())


async def test_amounts_are_taken_as_people_type_them(served: Served) -> None:
    """Finance records a 21Vianet bill typing the amount as it is printed on it; a word where
    the amount goes is refused, naming the field in Chinese, and records nothing."""
    page = await sign_in(served, READERS[Role.FINANCE][0])
    number = f"VN-{uuid.uuid4().hex[:8].upper()}"
    due = (date.today() + timedelta(days=30)).isoformat()
    try:
        await page.goto(f"{served.url}/payables")
        await do(page, "record", invoice_number=f"{number}X", amount="十二万", due_date=due)
        problem = page.locator('[data-problem="amount"]')
        await expect(problem).to_contain_text("必须是金额")
        with pytest.raises(NotFound):
            await served.stack.service.vianet_invoices.show(f"{number}X")
        await page.goto(f"{served.url}/payables")
        await do(page, "record", invoice_number=number, amount="¥128,000.00", due_date=due)
        await expect(page.locator("p.done")).to_be_visible()
        recorded = await served.stack.service.vianet_invoices.show(number)
        assert recorded.amount == Decimal("128000.00")
    finally:
        await page.context.close()
