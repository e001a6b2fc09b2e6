"""A case's attachments from its page, over the real inbound service, worker and workspace (SQLite
and, where TEST_DATABASE_URL is set, PostgreSQL): the stored bytes come back as a download with a
safe type, the Chinese name and a CSP that runs nothing; only signed-in staff get one, and only a
file of that very case; a file the store lost is a clear 404; the 21Vianet request links the
files it names. (The same download in a real browser: test_attachments_browser.py.)"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from core.models import Escalate, RequestInfo, Severity
from intake.mail import Attachment
from service.attachments import Attachments, Direction
from service.inbound import Outcome
from tests.conftest import DATABASES, _reset_postgres
from tests.test_inbound import CUSTOMER, THREAD_SECRET, last_email, open_case
from tests.workspace_support import AGENT, FINANCE, Stack, browser, signed_in, workspace
from web.routes.attachments import FILE_CSP, disposition, served_type

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
INBOUND = {
    "inbound_domain": "reply.partner.example.cn",
    "email_thread_secret": SecretStr(THREAD_SECRET),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_files(
    sent_reply_to: str, message_id: str, references: str, *files: tuple[str, str, bytes]
) -> bytes:
    """The customer's reply to our email (its Reply-To, Message-ID, References), with `files`
    (name, type, bytes), the names RFC 2231-encoded in GBK as Chinese mail clients write them."""
    parts = [
        f"From: {CUSTOMER}\r\nTo: {sent_reply_to}\r\nSubject: invoice\r\n"
        f"Message-ID: <{uuid.uuid4()}@qq.com>\r\n"
        f"In-Reply-To: {message_id}\r\nReferences: {references}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n\r\n见附件\r\n"
    ]
    for name, kind, data in files:
        parts.append(
            f"--b1\r\nContent-Type: {kind}\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename*=gbk''{quote(name.encode('gbk'))}\r\n\r\n"
            f"{base64.b64encode(data).decode()}\r\n"
        )
    return ("".join(parts) + "--b1--\r\n").encode()


async def case_with_files(stack: Stack, *files: tuple[str, str, bytes]) -> str:
    """A case whose customer answered our question with `files`, through the inbound service."""
    case_id = await open_case(stack.service)
    await stack.service.cases.act(case_id, RequestInfo(question="请提供发票。", by=AGENT))
    sent = await last_email(stack.settings, "info_requested", case_id)
    raw = with_files(
        str(sent["Reply-To"]), str(sent["Message-ID"]), str(sent["References"]), *files
    )
    assert (await stack.service.inbound.receive(raw)).outcome is Outcome.REPLIED
    return case_id


@asynccontextmanager
async def mail_workspace(
    database: str, dev_env: WorkflowEnvironment, folder: Path
) -> AsyncIterator[Stack]:
    """The workspace taking customers' mail (and its files) on `database` (a DATABASES param)."""
    url = f"sqlite:///{folder / 'billing.db'}"
    if database == "postgresql":
        url = os.environ["TEST_DATABASE_URL"]
        _reset_postgres(url)
    async with workspace(
        dev_env, folder, database_url=url, attachments_dir=folder / "attachments", **INBOUND
    ) as stack:
        yield stack


@pytest_asyncio.fixture(scope="module", params=DATABASES)
async def stack(
    request: pytest.FixtureRequest,
    dev_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp(f"attachments-{request.param}")
    async with mail_workspace(request.param, dev_env, folder) as stack:
        yield stack


async def test_a_case_file_downloads_as_stored_with_safe_headers(stack: Stack) -> None:
    case_id = await case_with_files(stack, ("发票.pdf", "application/pdf", PDF))
    client = await signed_in(stack.app, AGENT)
    page = await client.get(f"/cases/{case_id}")
    link = f"/cases/{case_id}/attachments/{sha(PDF)}"
    assert page.status_code == 200 and f'href="{link}" download' in page.text
    assert "发票.pdf" in page.text and "客户发来" in page.text
    assert f'href="{link}?view=1"' in page.text and "在浏览器中查看" in page.text

    answer = await client.get(link)
    assert answer.status_code == 200 and answer.content == PDF
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"] == (
        "attachment; filename=\"attachment.pdf\"; filename*=UTF-8''%E5%8F%91%E7%A5%A8.pdf"
    )
    assert answer.headers.get_list("content-security-policy") == [FILE_CSP]
    assert answer.headers.get_list("x-content-type-options") == ["nosniff"]
    assert answer.headers["cache-control"] == "private, no-store"
    assert answer.headers["content-length"] == str(len(PDF))
    # shown in the browser: the same bytes and headers, inline
    shown = await client.get(link, params={"view": "1"})
    assert shown.content == PDF and shown.headers["content-type"] == "application/pdf"
    assert shown.headers["content-disposition"].startswith('inline; filename="attachment.pdf"')
    assert shown.headers.get_list("content-security-policy") == [FILE_CSP]
    # finance reads cases too
    assert (await (await signed_in(stack.app, FINANCE)).get(link)).content == PDF


async def test_a_photo_may_be_viewed_in_the_browser_and_a_spreadsheet_not(stack: Stack) -> None:
    usage = "日期,用量\n2026-10-01,42\n".encode()
    case_id = await case_with_files(
        stack, ("发票照片.png", "image/png", PNG), ("用量.csv", "text/csv", usage)
    )
    client = await signed_in(stack.app, AGENT)
    link = f"/cases/{case_id}/attachments/{sha(PNG)}"
    page = (await client.get(f"/cases/{case_id}")).text
    assert f'href="{link}?view=1"' in page and f"{sha(usage)}?view=1" not in page
    shown = await client.get(link, params={"view": "1"})
    assert shown.content == PNG and shown.headers["content-type"] == "image/png"
    assert shown.headers["content-disposition"].startswith('inline; filename="attachment.png"')
    assert shown.headers.get_list("content-security-policy") == [FILE_CSP]
    assert (await client.get(link)).headers["content-disposition"].startswith("attachment;")
    sheet = await client.get(f"/cases/{case_id}/attachments/{sha(usage)}", params={"view": "1"})
    assert sheet.content == usage and sheet.headers["content-type"] == "text/csv"
    assert sheet.headers["content-disposition"].startswith('attachment; filename="attachment.csv"')


async def test_only_the_cases_own_files_are_served(stack: Stack) -> None:
    case_id = await case_with_files(stack, ("账单.pdf", "application/pdf", PDF + b"mine"))
    other = await case_with_files(stack, ("他人的发票.pdf", "application/pdf", PDF + b"other"))
    client = await signed_in(stack.app, AGENT)
    # another case's file, though it is in the store
    theirs = await client.get(f"/cases/{case_id}/attachments/{sha(PDF + b'other')}")
    assert theirs.status_code == 404 and "此工单没有这个附件" in theirs.text
    assert (
        await client.get(f"/cases/{other}/attachments/{sha(PDF + b'other')}")
    ).status_code == 200
    mine = sha(PDF + b"mine")
    for path in (
        f"/cases/no-such-case/attachments/{mine}",
        f"/cases/{case_id}/attachments/{mine.upper()}",
        f"/cases/{case_id}/attachments/{mine[:63]}",
        f"/cases/{case_id}/attachments/..%2F..%2F..%2Fetc%2Fpasswd",
        f"/cases/{case_id}/attachments/%2E%2E",
        f"/cases/{case_id}/attachments/{mine[:2]}%2F{mine}",
    ):
        answer = await client.get(path)
        assert answer.status_code == 404, path
        assert b"root:" not in answer.content and PDF not in answer.content


async def test_signed_out_people_get_the_sign_in_page_and_no_bytes(stack: Stack) -> None:
    case_id = await case_with_files(stack, ("发票.pdf", "application/pdf", PDF + b"private"))
    link = f"/cases/{case_id}/attachments/{sha(PDF + b'private')}"
    answer = await browser(stack.app).get(link)
    assert (
        answer.status_code == 303
        and answer.headers["location"] == f"/login?next={quote(link, safe='')}"
    )
    assert PDF not in answer.content


async def test_a_file_the_store_lost_is_a_clear_404(stack: Stack) -> None:
    data = PDF + b"lost"
    case_id = await case_with_files(stack, ("发票.pdf", "application/pdf", data))
    stack.service.attachments.store.path_for(sha(data)).unlink()
    client = await signed_in(stack.app, AGENT)
    answer = await client.get(f"/cases/{case_id}/attachments/{sha(data)}")
    assert answer.status_code == 404 and "ATTACHMENTS_DIR" in answer.text and "备份" in answer.text
    assert "text/html" in answer.headers["content-type"]


async def test_a_type_outside_the_list_or_one_that_runs_is_served_as_bytes(stack: Stack) -> None:
    case_id = await case_with_files(stack, ("发票.pdf", "application/pdf", PDF + b"typed"))
    # kept while the settings took these types (they no longer do, or never may run)
    wider = stack.settings.model_copy(
        update={"attachment_types": ["application/x-dwg", "text/html", "image/svg+xml"]}
    )
    files = [
        Attachment("图纸.dwg", "application/x-dwg", b"AC1027 drawing"),
        Attachment("page.html", "text/html", b"<script>alert(1)</script>"),
        Attachment("logo.svg", "image/svg+xml", b"<svg onload='alert(1)'/>"),
    ]
    source = f"test-{uuid.uuid4()}"
    await Attachments(wider).keep(case_id, Direction.INBOUND, source, files)
    await Attachments(wider).keep(case_id, Direction.INBOUND, source, files)  # once is once
    listed = [f.name for f in await stack.service.attachments.of(case_id)]
    assert listed == ["发票.pdf", "图纸.dwg", "page.html", "logo.svg"]
    client = await signed_in(stack.app, AGENT)
    for file in files:
        answer = await client.get(
            f"/cases/{case_id}/attachments/{sha(file.data)}", params={"view": "1"}
        )
        assert answer.content == file.data
        assert answer.headers["content-type"] == "application/octet-stream", file.filename
        assert answer.headers["content-disposition"].startswith("attachment;")


async def test_the_21vianet_request_links_the_files_it_names(stack: Stack) -> None:
    case_id = await case_with_files(
        stack, ("发票.pdf", "application/pdf", PDF + b"21v"), ("用量.png", "image/png", PNG)
    )
    escalate = Escalate(reason="计量数据与账单不符。", severity=Severity.B, by=AGENT)
    view = await stack.service.cases.act(case_id, escalate)
    assert sha(PDF + b"21v") in view.escalations[-1].request_body
    client = await signed_in(stack.app, AGENT)
    page = (await client.get(f"/cases/{case_id}")).text
    files = page.split('data-testid="request-files"', 1)[1].split("</ul>", 1)[0]
    assert f'href="/cases/{case_id}/attachments/{sha(PDF + b"21v")}" download' in files
    assert f'href="/cases/{case_id}/attachments/{sha(PNG)}" download' in files
    assert "请在门户中把请求里列出的文件作为附件添加到该请求" in page


@pytest.mark.parametrize(
    ("name", "plain", "encoded"),
    [
        ("发票.pdf", "attachment.pdf", "%E5%8F%91%E7%A5%A8.pdf"),
        ("invoice 10月.pdf", "invoice 10.pdf", "invoice%2010%E6%9C%88.pdf"),
        ('a"b\r\nSet-Cookie: x=1.pdf', "a_bSet-Cookie_ x_1.pdf", "a_bSet-Cookie%3A%20x%3D1.pdf"),
        ("../../etc/passwd", "passwd", "passwd"),
        ("C:\\temp\\账单.xlsx", "attachment.xlsx", "%E8%B4%A6%E5%8D%95.xlsx"),
        ("Café ﬁle.xlsx", "Cafe file.xlsx", "Caf%C3%A9%20%EF%AC%81le.xlsx"),
        ("x\u202efdp.exe", "xfdp.exe", "xfdp.exe"),
        ("..", "attachment", "attachment"),
    ],
)
def test_the_file_name_survives_and_breaks_no_header(name: str, plain: str, encoded: str) -> None:
    header = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}"
    assert disposition(name) == header
    assert disposition(name, inline=True) == "inline" + header.removeprefix("attachment")


def test_the_served_type_is_a_listed_one_that_runs_nothing() -> None:
    taken = ["application/pdf", "image/png", "text/html"]
    assert served_type("application/pdf", taken) == "application/pdf"
    assert served_type("Image/PNG; name=x.png", taken) == "image/png"
    assert served_type("text/html", taken) == "application/octet-stream"
    assert served_type("application/zip", taken) == "application/octet-stream"
