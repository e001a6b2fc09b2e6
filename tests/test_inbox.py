"""The inbox of the mail that matched nothing, the customer's emails on the case page and the
customer page, over the real inbound service, worker and workspace (SQLite and, where
TEST_DATABASE_URL is set, PostgreSQL): an out-of-office reply and an unknown sender's email are
listed; attaching one files it on the case (a note, its file, its row beside our emails) and takes
it off the list; marking one handled records who; a forged or stale form changes nothing; the
customer page lists the tenant's cases, invoices and emails. (The same in a real browser:
test_inbox_browser.py.)"""

from __future__ import annotations

import base64
import html
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from core.models import BillingFailure, RequestInfo
from service.inbound import Outcome
from tests.clock_support import eventually
from tests.conftest import DATABASES
from tests.test_attachment_downloads import PDF, mail_workspace, sha
from tests.test_inbound import CUSTOMER, last_email, open_case, reply_to
from tests.workspace_support import AGENT, FINANCE, MANAGER, Stack, csrf_of, signed_in

STRANGER = "zhang.wei@unknown.example.cn"
# what a zh-CN page may show in Latin letters: addresses, ids, codes, file names, the language
DATA = re.compile(
    r"[\w.+-]+@[\w.-]+|\b[A-Z]{2,}-[0-9A-Za-z-]+|\b[0-9a-f-]{8,}\b|zh-CN|English|SLA|[\w-]+\.pdf"
)


def latin_words(page: str) -> list[str]:
    """The Latin words a zh-CN page shows, but for DATA."""
    shown = html.unescape(re.sub(r"<[^>]*>", " ", page[page.index("<body") :]))
    return re.findall(r"[A-Za-z]{2,}", DATA.sub(" ", shown))


def stranger_mail(subject: str = "关于合同续签", text: str = "您好，请问续签价格？") -> bytes:
    """An email from no known customer on no thread of ours, with a PDF."""
    body = base64.b64encode(text.encode()).decode()
    return (
        f"From: =?UTF-8?B?{base64.b64encode('张伟'.encode()).decode()}?= <{STRANGER}>\r\n"
        "To: billing-support@reply.partner.example.cn\r\n"
        f"Subject: =?UTF-8?B?{base64.b64encode(subject.encode()).decode()}?=\r\n"
        f"Message-ID: <{uuid.uuid4()}@unknown.example.cn>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{body}\r\n--b1\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename=contract.pdf\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{base64.b64encode(PDF).decode()}\r\n--b1--\r\n"
    ).encode()


async def out_of_office(stack: Stack) -> str:
    """A case whose customer's mail server answered our question with an auto-reply."""
    case_id = await open_case(stack.service)
    await stack.service.cases.act(case_id, RequestInfo(question="请提供发票。", by=AGENT))
    sent = await last_email(stack.settings, "info_requested", case_id)
    auto = reply_to(sent, "休假至12月10日，急事请致电。", **{"Auto-Submitted": "auto-replied"})
    assert (await stack.service.inbound.receive(auto)).outcome is Outcome.AUTO_REPLY
    return case_id


async def unpaid_invoice(stack: Stack, case_id: str) -> BillingFailure:
    """A failed payment of ¥4,300.00 by the case's customer, in collections."""
    view = await stack.service.cases.show(case_id)
    failure = BillingFailure(
        failure_id=f"F-{uuid.uuid4().hex[:8]}",
        invoice_id=f"INV-2026-{uuid.uuid4().hex[:6].upper()}",
        customer=view.details.customer,
        amount_due=Decimal("4300.00"),
        failed_at=datetime.now(UTC),
        subscription_ids=[str(uuid.uuid4())],
    )
    await stack.service.collections.report_failure(failure, stack.service.collections.policies())
    return failure


async def letter_id(client: httpx.AsyncClient, text: str, view: str = "all") -> str:
    """The id of the listed email whose article holds `text`."""
    page = (await client.get("/inbox", params={"view": view})).text
    for found in re.finditer(r'data-letter="(\d+)">(.*?)</article>', page, re.S):
        if text in found.group(2):
            return found.group(1)
    raise AssertionError(f"no email with {text!r} in the inbox's {view} view")


async def post(client: httpx.AsyncClient, path: str, **fields: str) -> httpx.Response:
    token = csrf_of((await client.get("/inbox")).text)
    return await client.post(path, data={**fields, "csrf_token": token})


@pytest_asyncio.fixture(scope="module", params=DATABASES)
async def stack(
    request: pytest.FixtureRequest,
    dev_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp(f"inbox-{request.param}")
    async with mail_workspace(request.param, dev_env, folder) as stack:
        yield stack


async def test_an_auto_reply_and_an_unknown_sender_are_listed(stack: Stack) -> None:
    await out_of_office(stack)
    assert (await stack.service.inbound.receive(stranger_mail())).outcome is Outcome.UNMATCHED
    client = await signed_in(stack.app, AGENT)
    person = (await client.get("/inbox")).text  # by default: what needs a person
    assert "关于合同续签" in person and "您好，请问续签价格？" in person and STRANGER in person
    assert "未知发件人" in person and "休假至12月10日" not in person
    autos = (await client.get("/inbox", params={"view": "auto-replies"})).text
    assert "休假至12月10日" in autos and "自动回复" in autos and "关于合同续签" not in autos
    both = (await client.get("/inbox", params={"view": "all"})).text
    assert latin_words(person) == [] and latin_words(both) == []
    assert both.index("关于合同续签") < both.index("休假至12月10日")  # the newest first
    # the stranger's PDF downloads from the inbox
    letter = await letter_id(client, "关于合同续签")
    answer = await client.get(f"/inbox/{letter}/files/{sha(PDF)}")
    assert answer.status_code == 200 and answer.content == PDF
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert (await client.get(f"/inbox/{letter}/files/{'0' * 64}")).status_code == 404
    # the needs-attention queue says how many wait
    queue = (await client.get("/queues/needs-attention")).text
    assert re.search(r"收件箱中有 \d+ 封邮件等待人工处理", queue)
    # finance has no inbox
    assert (await (await signed_in(stack.app, FINANCE)).get("/inbox")).status_code == 403


async def test_attaching_files_it_on_the_case_and_takes_it_off_the_list(stack: Stack) -> None:
    case_id = await open_case(stack.service)
    text = f"发票编号 {uuid.uuid4().hex[:8]} 有误"
    await stack.service.inbound.receive(stranger_mail("发票问题", text))
    client = await signed_in(stack.app, AGENT)
    letter = await letter_id(client, text, "person")
    answer = await post(client, f"/inbox/{letter}/attach", case_id=case_id)
    assert answer.status_code == 303 and "done=attached" in answer.headers["location"]
    assert text not in (await client.get("/inbox")).text
    handled = (await client.get("/inbox", params={"view": "handled"})).text
    assert text in handled and "处理人：" + AGENT in handled
    # on the case: the note, the file, and the email beside ours
    view = await stack.service.cases.show(case_id)
    notes = [e for e in view.timeline if e.kind == "note" and text in e.text]
    assert len(notes) == 1 and notes[0].actor == AGENT and STRANGER in notes[0].text
    page = (await client.get(f"/cases/{case_id}")).text
    assert "客户来信" in page and text in page and "contract.pdf" in page
    # the same form again changes nothing; another case is refused
    again = await post(client, f"/inbox/{letter}/attach", case_id=case_id)
    assert again.status_code == 303
    other = await post(client, f"/inbox/{letter}/attach", case_id=await open_case(stack.service))
    assert other.status_code == 409 and "已有人处理了这封邮件" in other.text
    view = await stack.service.cases.show(case_id)
    assert len([e for e in view.timeline if e.kind == "note" and text in e.text]) == 1


async def test_marking_handled_records_who_once(stack: Stack) -> None:
    text = f"请回电 {uuid.uuid4().hex[:8]}"
    await stack.service.inbound.receive(stranger_mail("来电请求", text))
    client = await signed_in(stack.app, MANAGER)
    letter = await letter_id(client, text, "person")
    for _ in range(2):  # idempotent
        answer = await post(client, f"/inbox/{letter}/handled")
        assert answer.status_code == 303
    assert text not in (await client.get("/inbox")).text
    agent = await signed_in(stack.app, AGENT)
    await post(agent, f"/inbox/{letter}/handled")  # a second person: the first one's stays
    found = await stack.service.inbox.letter(int(letter))
    assert found.handled_by == MANAGER and found.handled_at is not None


async def test_forged_and_stale_forms_change_nothing(stack: Stack) -> None:
    text = f"伪造测试 {uuid.uuid4().hex[:8]}"
    await stack.service.inbound.receive(stranger_mail("测试", text))
    client = await signed_in(stack.app, AGENT)
    letter = await letter_id(client, text, "person")
    case_id = await open_case(stack.service)
    # no CSRF token, or another session's
    bare = await client.post(f"/inbox/{letter}/handled", data={})
    assert bare.status_code == 403
    other = await signed_in(stack.app, MANAGER)
    stolen = csrf_of((await other.get("/inbox")).text)
    forged = await client.post(
        f"/inbox/{letter}/attach", data={"case_id": case_id, "csrf_token": stolen}
    )
    assert forged.status_code == 403
    # a row that is not there, a case that is not there, no case id
    assert (await post(client, "/inbox/99999999/handled")).status_code == 404
    missing = await post(client, f"/inbox/{letter}/attach", case_id="NO-SUCH-CASE")
    assert missing.status_code == 404 and "没有此编号的工单" in missing.text
    assert (await post(client, f"/inbox/{letter}/attach", case_id=" ")).status_code == 409
    found = await stack.service.inbox.letter(int(letter))
    assert found.handled_at is None and found.workflow_id is None


async def test_opening_a_case_from_an_email_fills_the_form_and_files_it(stack: Stack) -> None:
    text = f"新客户咨询 {uuid.uuid4().hex[:8]}"
    await stack.service.inbound.receive(stranger_mail("咨询", text))
    client = await signed_in(stack.app, AGENT)
    letter = await letter_id(client, text, "person")
    form = (await client.get("/cases/new", params={"inbox": letter})).text
    assert text in form and STRANGER in form and 'name="inbox"' in form
    token = csrf_of(form)
    key = re.search(r'name="request_key" value="([^"]+)"', form)
    assert key
    fields = {
        "csrf_token": token,
        "request_key": key.group(1),
        "inbox": letter,
        "tenant_id": str(uuid.uuid4()),
        "name": "张伟科技",
        "email": STRANGER,
        "locale": "zh-CN",
        "category": "billing-question",
        "priority": "normal",
        "description": text,
    }
    opened = await client.post("/cases/new", data=fields)
    assert opened.status_code == 303, opened.text
    case_id = opened.headers["location"].split("?")[0].removeprefix("/cases/")
    found = await stack.service.inbox.letter(int(letter))
    assert found.case_id == case_id and found.handled_by == AGENT
    assert "客户来信" in (await client.get(f"/cases/{case_id}")).text


async def test_the_case_page_lists_the_customers_email_beside_ours(stack: Stack) -> None:
    case_id = await open_case(stack.service)
    await stack.service.cases.act(case_id, RequestInfo(question="请提供发票。", by=AGENT))
    sent = await last_email(stack.settings, "info_requested", case_id)
    words = f"发票已附上 {uuid.uuid4().hex[:6]}"
    assert (await stack.service.inbound.receive(reply_to(sent, words))).outcome is Outcome.REPLIED
    page = (await (await signed_in(stack.app, AGENT)).get(f"/cases/{case_id}")).text
    thread = page[page.index('class="list thread"') :]
    assert thread.index("(索取信息)") < thread.index("客户来信") < thread.index(words)
    assert f"发件人 {CUSTOMER}" in thread


async def test_the_customer_page_lists_cases_invoices_and_emails(stack: Stack) -> None:
    case_id = await open_case(stack.service)
    failure = await unpaid_invoice(stack, case_id)
    tenant = failure.customer.tenant_id
    client = await signed_in(stack.app, AGENT)

    async def listed() -> bool:
        page = (await client.get(f"/customers/{tenant}")).text
        return case_id in page and failure.invoice_id in page

    await eventually(listed, seconds=10)  # the rows, written by the workers
    page = (await client.get(f"/customers/{tenant}")).text
    assert "上海云帆科技有限公司" in page and "¥4,300.00" in page and "催收中的账单" in page
    assert (
        f'href="/cases/{case_id}"' in page and f'href="/collections/{failure.invoice_id}"' in page
    )
    assert "尚无账户记录" in page or "无暂停" in page, page[page.index("账户") :][:1500]
    assert latin_words(page) == [] and "<td>扣款失败</td>" in page
    emails = page[page.index('data-testid="customer-emails"') :]
    assert "我们已收到您的账单问题" in emails and "新案例" not in emails  # no staff notification
    case_page = (await client.get(f"/cases/{case_id}")).text
    assert f'href="/customers/{tenant}"' in case_page
    unknown = await client.get(f"/customers/{uuid.uuid4()}")
    assert unknown.status_code == 404 and "系统中没有此租户编号的客户" in unknown.text
