"""Customer email in, on the real dev server and worker: SendGrid Inbound Parse's posts (raw mode,
multipart as SendGrid sends them), the CLI's file, routing by thread, once per message."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from email import policy
from email.message import EmailMessage as EmailMessageFile
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import func, select, update
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from api.app import create_app
from api.inbound_parse import PATH, FormError, raw_email
from core.models import (
    BillingFailure,
    CaseForm,
    CaseStatus,
    Category,
    CorrectContact,
    Escalate,
    EventKind,
    Outcome,
    PaymentReceived,
    RequestInfo,
    Resolve,
    Severity,
    TriageReply,
)
from core.settings import Settings, SettingsError
from core.threads import thread_token
from core.verdicts import Verdicts
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from db.tables import Case, EmailThread, InboundMail
from intake import mailbox
from intake.drop_folder import FolderMailbox
from intake.mail import MailError, parse_mail
from service import Service
from service.cases import CaseAction
from service.inbound import Outcome as Received
from service.inbound import category_of, confirms
from tests.clock_support import eventually
from tests.codec_support import replay_and_record
from tests.intake_support import SIGNED
from tests.test_inbound_mail import HALF_MB, HEAD, LONG_LINES, html, many_parts, nested, plain
from tests.workflow_support import billing_failure
from worker import build_worker

PARSE_SECRET = "inbound-parse-secret-3b8f1e"
THREAD_SECRET = "thread-secret-for-the-inbound-tests"
# the Event Webhook's signing key, generated: SendGrid's console would show its public half
EVENT_KEY = ec.generate_private_key(ec.SECP256R1())
EVENT_PUBLIC_KEY = base64.b64encode(
    EVENT_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
CUSTOMER = "finance@yunfan.example.cn"
BOUNDARY = "xYzZY"


@pytest_asyncio.fixture(name="running")
async def running_fixture(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Settings]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        attachments_dir=tmp_path / "attachments",
        task_queue=f"billing-{uuid.uuid4()}",
        inbound_domain="reply.partner.example.cn",
        email_thread_secret=SecretStr(THREAD_SECRET),
        inbound_parse_secret=SecretStr(PARSE_SECRET),
        sendgrid_event_public_key=EVENT_PUBLIC_KEY,
        **SIGNED,
    )
    upgrade(settings.database_url)
    async with build_worker(dev_env.client, settings):
        yield settings


@pytest_asyncio.fixture(name="service")
async def service_fixture(dev_env: WorkflowEnvironment, running: Settings) -> Service:
    return Service(dev_env.client, running)


@pytest_asyncio.fixture(name="sendgrid")
async def sendgrid_fixture(service: Service, running: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API as SendGrid reaches it: the credentials of the Inbound Parse URL."""

    async def factory() -> Service:
        return service

    transport = httpx.ASGITransport(app=create_app(running, factory))
    auth = httpx.BasicAuth("sendgrid", PARSE_SECRET)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", auth=auth) as http:
        yield http


def form(
    email: bytes, to: str = "", spf: bytes = b"pass", dkim: bytes = b"{@yunfan.example.cn : pass}"
) -> tuple[bytes, str]:
    """An Inbound Parse post in raw mode, as SendGrid writes it (boundary xYzZY)."""
    fields = [
        ("dkim", dkim),
        ("email", email),
        ("to", to.encode()),
        ("from", CUSTOMER.encode()),
        ("envelope", f'{{"to":["{to}"],"from":"{CUSTOMER}"}}'.encode()),
        ("charsets", b'{"to":"UTF-8","from":"UTF-8","subject":"UTF-8"}'),
        ("SPF", spf),
    ]
    body = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b"\r\n"
        for name, value in fields
    )
    return body + f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def reply_to(sent: EmailMessageFile, text: str, sender: str = CUSTOMER, **headers: str) -> bytes:
    """The customer's Foxmail reply to ``sent``: GBK, base64, the history quoted below."""
    quoted = (
        f"{text}\n\n------------------ 原始邮件 ------------------\n发件人: 账单支持\n\n尊敬的客户"
    )
    head = {
        "From": f"{_gbk_words('云帆财务')} <{sender}>",
        "To": str(sent["Reply-To"]),
        "Subject": _gbk_words("回复：" + str(sent["Subject"])),
        "Message-ID": f"<{uuid.uuid4()}@qq.com>",
        "In-Reply-To": str(sent["Message-ID"]),
        "References": f"{sent['References']} {sent['Message-ID']}",
        "MIME-Version": "1.0",
        "Content-Type": 'text/plain; charset="gbk"',
        "Content-Transfer-Encoding": "base64",
        **headers,
    }
    lines = "".join(f"{name}: {value}\r\n" for name, value in head.items())
    return lines.encode() + b"\r\n" + base64.encodebytes(quoted.encode("gbk"))


def _gbk_words(text: str) -> str:
    # ¥ is not in GBK: Chinese clients write the full-width ￥
    encoded = text.replace("¥", "￥").encode("gbk")
    return f"=?GBK?B?{base64.b64encode(encoded).decode()}?="


async def last_email(settings: Settings, template: str, case_id: str = "") -> EmailMessageFile:
    """The last ``template`` email (of ``case_id``) in the outbox, once it is there."""
    await eventually(lambda: _found(settings, template, case_id), seconds=10)
    return _emails(settings, template, case_id)[-1]


async def _found(settings: Settings, template: str, case_id: str) -> bool:
    return bool(_emails(settings, template, case_id))


def _emails(settings: Settings, template: str, case_id: str = "") -> list[EmailMessageFile]:
    found = []
    for path in sorted(settings.outbox_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if (
            isinstance(message, EmailMessageFile)
            and message["X-Category"] == template
            # a collections notice is sent by the customer's account: its subject names the bill
            and (case_id in message["X-Dedup-Key"] or case_id in str(message["Subject"]))
        ):
            found.append(message)
    return found


async def open_case(service: Service, *, told_when_delivered: bool = False) -> str:
    """A case of the customer; `told_when_delivered`: as under SendGrid, its resolution counts
    as told once delivered (the fixture's emails go to the outbox)."""
    form_ = CaseForm(
        tenant_id=str(uuid.uuid4()),
        name="上海云帆科技有限公司",
        email=CUSTOMER,
        category=Category.INVOICE_DISPUTE,
        description="十月发票多收了一台已删除的虚拟机。",
        amount=Decimal("1200.00"),
        opened_by="agent@partner.example.cn",
    )
    policy = service.settings.case_policy().model_copy(
        update={"told_when_delivered": told_when_delivered}
    )
    opened = await service.cases.open(service.cases.prepare(form_, policy))
    return opened.case_id


async def resolved_case(service: Service) -> str:
    case_id = await open_case(service)
    resolve = Resolve(outcome=Outcome.EXPLAINED, summary="已核对，费用说明见附件。", by="agent")
    view = await service.cases.act(case_id, resolve)
    assert view.status is CaseStatus.RESOLVED
    return case_id


async def _known(settings: Settings) -> bool:
    with make_session_factory(make_engine(settings.database_url))() as session:
        return (
            session.scalar(select(Case.case_id).where(Case.customer_email == CUSTOMER)) is not None
        )


def inbound_rows(settings: Settings) -> int:
    with make_session_factory(make_engine(settings.database_url))() as session:
        return int(session.scalar(select(func.count()).select_from(InboundMail)) or 0)


async def test_the_customers_confirmation_closes_the_case_once(
    service: Service, running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    case_id = await resolved_case(service)
    resolution = await last_email(running, "case_resolved")
    body, content_type = form(reply_to(resolution, "确认，谢谢！"), str(resolution["Reply-To"]))

    first = await sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})
    again = await sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})

    assert first.status_code == 200, first.text
    assert first.json() == {
        "outcome": "confirmed",
        "workflow_id": f"case-{case_id}",
        "duplicate": False,
    }
    assert again.json()["duplicate"] is True
    view = await service.cases.show(case_id)
    assert view.status is CaseStatus.CLOSED
    assert [e.kind for e in view.timeline].count(EventKind.CONFIRMED) == 1


async def test_any_other_reply_reopens_with_the_reply_as_reason(
    service: Service, running: Settings
) -> None:
    case_id = await resolved_case(service)
    raw = reply_to(await last_email(running, "case_resolved"), "不同意，发票金额应为 ￥1,000.00。")
    received = await service.inbound.receive(raw)

    assert received.outcome is Received.REOPENED
    view = await service.cases.show(case_id)
    assert view.status is CaseStatus.OPEN and view.reopen_count == 1
    reopened = [e for e in view.timeline if e.kind is EventKind.REOPENED]
    assert reopened[0].text == "不同意，发票金额应为 ￥1,000.00。"


async def test_a_reply_to_a_question_runs_the_clocks_again(
    service: Service, running: Settings
) -> None:
    case_id = await open_case(service)
    asked = await service.cases.act(case_id, RequestInfo(question="请提供发票号。", by="agent"))
    assert asked.status is CaseStatus.WAITING_ON_CUSTOMER
    raw = reply_to(await last_email(running, "info_requested"), "发票号 G000123456")
    assert (await service.inbound.receive(raw)).outcome is Received.REPLIED
    assert (await service.cases.show(case_id)).status is CaseStatus.OPEN


async def test_a_reply_to_a_working_case_is_taken_in_one_round_trip(
    service: Service, running: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = await open_case(service)
    await service.cases.act(case_id, RequestInfo(question="请提供发票号。", by="agent"))
    raw = reply_to(await last_email(running, "info_requested", case_id), "发票号 G000123456")

    async def unasked(case_id: str) -> None:
        raise AssertionError("the workflow was asked for its view")

    monkeypatch.setattr(service.cases, "show", unasked)
    assert (await service.inbound.receive(raw)).outcome is Received.REPLIED


async def test_where_the_cases_table_is_behind_the_workflow_decides(
    service: Service, running: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = await resolved_case(service)
    sent = await last_email(running, "case_resolved", case_id)
    with make_session_factory(make_engine(running.database_url))() as session:
        session.execute(update(Case).where(Case.case_id == case_id).values(status="open"))
        session.commit()
    acted = service.cases.act
    sent_first: list[str] = []

    async def recorded(case_id: str, action: CaseAction, *, update_id: str | None = None) -> Any:
        sent_first.append(type(action).__name__)
        return await acted(case_id, action, update_id=update_id)

    monkeypatch.setattr(service.cases, "act", recorded)
    received = await service.inbound.receive(reply_to(sent, "确认"))

    # the customer_reply sent first is refused; under the same update id, the reply confirms
    assert sent_first == ["CustomerReply", "Confirm"]
    assert received.outcome is Received.CONFIRMED
    assert (await service.cases.show(case_id)).status is CaseStatus.CLOSED


async def test_another_sender_auto_replies_and_loops_never_act(
    service: Service, running: Settings
) -> None:
    case_id = await resolved_case(service)
    sent = await last_email(running, "case_resolved")
    colleague = reply_to(sent, "确认", sender="boss@other.example.com")
    auto = reply_to(sent, "我正在休假。", **{"Auto-Submitted": "auto-replied"})
    ours = reply_to(sent, "确认", sender="billing-support@partner.example.cn")

    assert (await service.inbound.receive(colleague)).outcome is Received.OTHER_SENDER
    assert (await service.inbound.receive(auto)).outcome is Received.AUTO_REPLY
    assert (await service.inbound.receive(ours)).outcome is Received.LOOP
    assert (await service.cases.show(case_id)).status is CaseStatus.RESOLVED


async def test_only_the_customers_own_address_acts_on_a_case(
    service: Service, running: Settings
) -> None:
    case_id = await resolved_case(service)
    sent = await last_email(running, "case_resolved")
    # a colleague at the customer's domain, a look-alike domain, anyone at a public mail service
    for sender in ("boss@yunfan.example.cn", "finance@yunfan.example.cn.cc", "finance@qq.com"):
        received = await service.inbound.receive(reply_to(sent, "确认", sender=sender))
        assert received.outcome is Received.OTHER_SENDER, sender
    view = await service.cases.show(case_id)
    assert view.status is CaseStatus.RESOLVED
    noted = [e for e in view.timeline if e.kind is EventKind.NOTE and "another sender" in e.text]
    assert len(noted) == 3 and {e.actor for e in noted} == {"another sender (email)"}

    # the customer's address as their mail client writes it
    confirmed = await service.inbound.receive(reply_to(sent, "确认", sender=CUSTOMER.upper()))
    assert confirmed.outcome is Received.CONFIRMED


async def test_a_reply_after_the_case_ended_opens_a_linked_case(
    service: Service, running: Settings
) -> None:
    case_id = await resolved_case(service)
    sent = await last_email(running, "case_resolved")
    await service.inbound.receive(reply_to(sent, "确认"))
    later = await service.inbound.receive(reply_to(sent, "又收到了同样的错误账单。"))

    assert later.outcome is Received.FOLLOW_UP and later.case_id and later.case_id != case_id
    view = await service.cases.show(later.case_id)
    assert view.details.description == "又收到了同样的错误账单。"
    assert any(case_id in e.text for e in view.timeline if e.kind is EventKind.NOTE)


async def test_no_thread_opens_a_case_for_a_known_customer_only(
    service: Service, running: Settings
) -> None:
    await open_case(service)
    await eventually(lambda: _known(running), seconds=10)  # the case's row, written by its worker
    new = (
        f"From: {CUSTOMER}\r\nTo: billing-support@reply.partner.example.cn\r\n"
        "Subject: =?UTF-8?B?" + base64.b64encode("申请退款".encode()).decode() + "?=\r\n"
        "Message-ID: <new-1@yunfan.example.cn>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "上月重复扣款，请退款。\r\n"
    ).encode()
    received = await service.inbound.receive(new)
    assert received.outcome is Received.NEW_CASE and received.case_id
    view = await service.cases.show(received.case_id)
    assert view.details.category is Category.REFUND_REQUEST and view.owner is None

    stranger = new.replace(CUSTOMER.encode(), b"someone@unknown.example").replace(b"new-1", b"n2")
    assert (await service.inbound.receive(stranger)).outcome is Received.UNMATCHED


async def test_forged_unsigned_and_oversized_posts_are_refused_and_change_nothing(
    service: Service, running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    case_id = await resolved_case(service)
    body, content_type = form(reply_to(await last_email(running, "case_resolved"), "确认"))
    headers = {"Content-Type": content_type}

    unsigned = await sendgrid.post(PATH, content=body, headers=headers, auth=lambda r: r)
    wrong = await sendgrid.post(PATH, content=body, headers=headers, auth=("sendgrid", "guess"))
    huge = await sendgrid.post(
        PATH, content=b"x", headers={**headers, "Content-Length": str(31 * 1024 * 1024)}
    )
    no_email = await sendgrid.post(PATH, content=form(b"")[0].replace(b'"email"', b'"text"'))

    assert (unsigned.status_code, wrong.status_code, huge.status_code) == (401, 401, 413)
    assert no_email.status_code == 400 and "multipart" in no_email.json()["detail"]
    assert inbound_rows(running) == 0
    assert (await service.cases.show(case_id)).status is CaseStatus.RESOLVED


async def test_a_forged_token_routes_nowhere(service: Service, running: Settings) -> None:
    case_id = await resolved_case(service)
    sent = await last_email(running, "case_resolved")
    forged = reply_to(
        sent,
        "确认",
        To="billing-support+aaaaaaaaaaaaaaaaaaaa@reply.partner.example.cn",
        **{
            "In-Reply-To": "<x@y>",
            "References": "<thread.bbbbbbbbbbbbbbbbbbbb@partner.example.cn>",
        },
    )
    received = await service.inbound.receive(forged)
    assert received.outcome is not Received.CONFIRMED
    assert (await service.cases.show(case_id)).status is CaseStatus.RESOLVED


async def test_a_reply_on_a_thread_from_before_a_rotation_still_reaches_its_case(
    dev_env: WorkflowEnvironment, service: Service, running: Settings
) -> None:
    case_id = await resolved_case(service)
    resolution = await last_email(running, "case_resolved")  # its token under the old secret
    both = SecretStr(f"{THREAD_SECRET},the-next-thread-secret-after-rotation-42")
    rotated = running.model_copy(update={"email_thread_secret": both})

    received = await Service(dev_env.client, rotated).inbound.receive(reply_to(resolution, "确认"))

    assert received.outcome is Received.CONFIRMED and received.case_id == case_id
    assert (await service.cases.show(case_id)).status is CaseStatus.CLOSED


async def test_no_inbound_mail_without_a_thread_secret(
    dev_env: WorkflowEnvironment, service: Service, running: Settings
) -> None:
    case_id = await resolved_case(service)
    unsigned = running.model_copy(update={"email_thread_secret": None})
    reply = reply_to(await last_email(running, "case_resolved"), "确认")
    with pytest.raises(SettingsError, match="EMAIL_THREAD_SECRET is not set"):
        await Service(dev_env.client, unsigned).inbound.receive(reply)
    assert inbound_rows(running) == 0
    assert (await service.cases.show(case_id)).status is CaseStatus.RESOLVED


async def test_an_unreadable_email_is_recorded_and_answered(
    service: Service, running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    body, content_type = form(b"\x00\x01 not mail")
    answer = await sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 200 and answer.json()["outcome"] == "unreadable"


# each shaped to be slow to read (issue 26), first the one the old reading took least time over
SLOW_TO_READ = {
    "nested 500 deep": (nested(500), "unreadable"),
    "5,000 parts": (many_parts(5_000), "unreadable"),
    "NetEase's marker, 0.5 MB": (plain(f"确认\n{LONG_LINES['netease']}"), "unmatched"),
    "Gmail's marker, 0.5 MB": (plain(f"确认\n{LONG_LINES['gmail']}"), "unmatched"),
    "a sender of 100,000 quotes": (
        plain("确认", HEAD.replace("a@yunfan.example.cn", '"a' * 100_000 + " <a@b.example>")),
        "unreadable",
    ),
    "a subject of 1.5 MB": (
        plain("确认", HEAD.replace("Subject: x", "Subject: " + "发票" * HALF_MB)),
        "unmatched",
    ),
    "unclosed tags, 0.5 MB": (html("<a b=" * 100_000), "unmatched"),
}


async def test_mail_shaped_to_be_slow_never_stalls_the_api(
    sendgrid: httpx.AsyncClient, running: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of these is read away from the event loop: while its reading is under way (held
    open until the API has answered), /healthz is answered; then the real reading runs, and
    each is answered: read within the bounds, or recorded as unreadable. No stopwatch: a busy
    machine cannot change the answer."""
    reading_began, healthz_answered = threading.Event(), threading.Event()
    real = parse_mail  # what service.inbound calls, until patched below

    def held(raw: bytes, envelope_to: tuple[str, ...], *, seconds: float) -> Any:
        with pytest.raises(RuntimeError):  # no event loop runs in the reading's thread
            asyncio.get_running_loop()
        reading_began.set()
        assert healthz_answered.wait(timeout=30), "the API answered nothing while reading"
        return real(raw, envelope_to, seconds=seconds)

    monkeypatch.setattr("service.inbound.parse_mail", held)
    for name, (email, outcome) in SLOW_TO_READ.items():
        reading_began.clear()
        healthz_answered.clear()
        body, content_type = form(email)
        posting = asyncio.create_task(
            sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})
        )
        while not reading_began.is_set():
            assert not posting.done(), (name, posting.result().text)
            await asyncio.sleep(0.01)
        assert (await sendgrid.get("/healthz")).status_code == 200, name
        healthz_answered.set()
        answer = await posting
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json()["outcome"] == outcome, name


async def test_a_message_not_read_in_time_is_recorded_unreadable(
    sendgrid: httpx.AsyncClient, running: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stuck(raw: bytes, envelope_to: tuple[str, ...], *, seconds: float) -> None:
        time.sleep(1.0)  # a reading that would not stop at its own deadline
        raise MailError("read too late")

    monkeypatch.setattr("service.inbound.parse_mail", stuck)
    monkeypatch.setattr("service.inbound.READ_SECONDS", 0.2)
    body, content_type = form(plain("确认"))
    first = await sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})
    again = await sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})

    assert first.status_code == 200 and first.json()["outcome"] == "unreadable"
    assert again.json() == {**first.json(), "duplicate": True}  # recorded, not read again
    with make_session_factory(make_engine(running.database_url))() as session:
        assert session.scalars(select(InboundMail.outcome)).all() == ["unreadable"]


def test_the_inbound_parse_form_gives_the_email_as_posted() -> None:
    # 8-bit GBK, a line like the form's boundary, and a million empty lines (the email package
    # took the form a line at a time)
    email = "确认".encode("gbk") + b"\r\n--xYzZ\r\n" + b"\r\n" * 1_000_000
    body, content_type = form(email, "billing-support+x@reply.partner.example.cn")
    raw, envelope_to, _ = raw_email(content_type, body)
    assert (raw, envelope_to) == (email, ("billing-support+x@reply.partner.example.cn",))
    with pytest.raises(FormError, match="multipart"):
        raw_email("multipart/form-data", body)  # no boundary


@pytest.mark.parametrize(
    ("reply", "confirmed"),
    [
        ("确认", True),
        ("确认，谢谢。", True),
        ("同意", True),
        ("Confirmed, thanks", True),
        ("我确认", True),
        ("不同意", False),
        ("不确认", False),
        ("金额不对", False),
        ("", False),
    ],
)
def test_what_confirms(reply: str, confirmed: bool) -> None:
    assert confirms(reply, ["确认", "同意", "confirm"]) is confirmed


def test_categories_from_keywords() -> None:
    assert category_of("申请退款") is Category.REFUND_REQUEST
    assert category_of("发票抬头") is Category.FAPIAO  # a fapiao request (docs/fapiao.md)
    assert category_of("请重开发票，税号有误") is Category.FAPIAO
    assert category_of("发票金额不对") is Category.INVOICE_DISPUTE
    assert category_of("你好") is Category.BILLING_QUESTION


async def test_the_cli_and_the_drop_folder_take_an_eml_file(
    dev_env: WorkflowEnvironment, service: Service, running: Settings, tmp_path: Path
) -> None:
    first, second = await resolved_case(service), await resolved_case(service)
    replies = [
        reply_to(await last_email(running, "case_resolved", case_id), "确认")
        for case_id in (first, second)
    ]
    (tmp_path / "reply.eml").write_bytes(replies[0])
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TASK_QUEUE": running.task_queue,
        "DATABASE_URL": running.database_url,
        "EMAIL_THREAD_SECRET": THREAD_SECRET,
    }
    shown = await asyncio.to_thread(
        CliRunner().invoke, starter.app, ["mail", "receive", str(tmp_path / "reply.eml")], env=env
    )
    assert shown.exit_code == 0 and f"confirmed (case-{first})" in shown.output, shown.output

    folder = tmp_path / "inbound"
    folder.mkdir()
    (folder / "a.eml").write_bytes(replies[1])
    (folder / "b.eml").write_bytes(b"\x00 not mail")

    async def receive(raw: bytes) -> str:
        return (await service.inbound.receive(raw)).outcome.value

    taken = await mailbox.take(FolderMailbox(folder, settle=0), receive)
    assert taken == [("a.eml", "confirmed"), ("b.eml", "unreadable")]
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["a.eml", "b.eml"]
    for case_id in (first, second):
        assert (await service.cases.show(case_id)).status is CaseStatus.CLOSED


async def test_a_file_that_breaks_receive_is_set_aside_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "x.eml").write_bytes(b"From: a@b.example\r\n\r\nhi")

    async def broken(raw: bytes) -> str:
        raise ValueError("email: something specific")

    async def later(raw: bytes) -> str:
        raise mailbox.TryLater("Temporal is unavailable")

    assert await mailbox.take(FolderMailbox(tmp_path, settle=0), later) == []
    assert (tmp_path / "x.eml").exists()  # waits for the next look
    assert await mailbox.take(FolderMailbox(tmp_path, settle=0), broken) == [
        ("x.eml", "failed: email: something specific")
    ]
    assert (tmp_path / "failed" / "x.eml.error").read_text().strip() == "email: something specific"


async def test_attachments_are_stored_outside_temporal_and_listed(
    service: Service, running: Settings
) -> None:
    case_id = await open_case(service)
    await service.cases.act(case_id, RequestInfo(question="请提供发票。", by="agent"))
    sent = await last_email(running, "info_requested", case_id)
    pdf = b"%PDF-1.4 invoice"
    raw = (
        f"From: {CUSTOMER}\r\nTo: {sent['Reply-To']}\r\nSubject: invoice\r\n"
        f"In-Reply-To: {sent['Message-ID']}\r\nReferences: {sent['References']}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n\r\n见附件\r\n--b1\r\n"
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename*=gbk''%B7%A2%C6%B1.pdf\r\n\r\n"
        f"{base64.b64encode(pdf).decode()}\r\n--b1--\r\n"
    ).encode()

    assert (await service.inbound.receive(raw)).outcome is Received.REPLIED

    digest = hashlib.sha256(pdf).hexdigest()
    assert (running.attachments_dir / digest[:2] / digest).read_bytes() == pdf
    view = await service.cases.show(case_id)
    listed = [e.text for e in view.timeline if e.kind is EventKind.NOTE]
    assert any(f"发票.pdf (16 bytes, sha256 {digest})" in text for text in listed)
    files = await service.attachments.of(case_id)
    assert [(f.name, f.size, f.sha256, f.content_type) for f in files] == [
        ("发票.pdf", 16, digest, "application/pdf")
    ]
    # and the 21Vianet service request filed for the case lists them too
    escalate = Escalate(reason="计量数据与账单不符。", severity=Severity.B, by="agent")
    escalated = await service.cases.act(case_id, escalate)
    assert f"发票.pdf (16 bytes, sha256 {digest})" in escalated.escalations[-1].request_body
    history = await service.client.get_workflow_handle(f"case-{case_id}").fetch_history()
    assert pdf not in history.to_json().encode()  # never inside a workflow payload


async def in_collections(
    service: Service, settings: Settings
) -> tuple[BillingFailure, EmailMessageFile]:
    """A failed payment's collections, and the notice its customer got (a reply goes to it)."""
    failure = billing_failure()
    await service.collections.report_failure(failure)
    notice = await last_email(settings, "collections_payment_failed", failure.invoice_id)
    return failure, notice


async def test_a_reply_to_a_collections_notice_waits_for_triage(
    service: Service, running: Settings
) -> None:
    failure, notice = await in_collections(service, running)
    raw = reply_to(notice, "这笔扣款有误，请核实。", sender=str(failure.customer.email))

    received = await service.inbound.receive(raw)

    assert received.outcome is Received.NOTED
    assert received.workflow_id == f"collections-{failure.invoice_id}"
    view = await service.collections.show(failure.invoice_id)
    assert view.needs_attention and "replied" in view.needs_attention
    assert any(e.kind is EventKind.CUSTOMER_REPLIED for e in view.timeline)
    triaged = await service.collections.act(
        failure.invoice_id, TriageReply(decision="no-action", by="agent")
    )
    assert triaged.needs_attention is None
    # paid: the history of a reply triaged replays (and is the recorded one)
    payment = PaymentReceived(
        payment_id=f"P-{failure.invoice_id}",
        invoice_id=failure.invoice_id,
        amount=failure.amount_due,
        received_at=datetime.now(UTC),
    )
    await service.collections.act(failure.invoice_id, payment)
    handle = service.client.get_workflow_handle(f"collections-{failure.invoice_id}")
    await handle.result()
    await replay_and_record(
        service.client, await handle.fetch_history(), "collections_reply_triaged"
    )


async def test_an_outsider_cannot_hold_an_invoices_suspension(
    service: Service, running: Settings
) -> None:
    failure, notice = await in_collections(service, running)
    for sender in ("someone@customer.example.cn", "attacker@qq.com"):  # the customer's: ap@
        received = await service.inbound.receive(reply_to(notice, "已付款，请勿停用。", sender))
        assert received.outcome is Received.OTHER_SENDER, sender
        assert received.workflow_id == f"collections-{failure.invoice_id}"
    view = await service.collections.show(failure.invoice_id)
    assert view.needs_attention is None
    assert not any(e.kind is EventKind.CUSTOMER_REPLIED for e in view.timeline)

    # the contact an agent confirmed is the customer's address from then on
    corrected = CorrectContact(email="someone@customer.example.cn", by="agent")
    await service.collections.act(failure.invoice_id, corrected)
    received = await service.inbound.receive(
        reply_to(notice, "这笔扣款有误。", "someone@customer.example.cn")
    )
    assert received.outcome is Received.NOTED
    view = await service.collections.show(failure.invoice_id)
    assert view.needs_attention and "replied" in view.needs_attention


async def test_a_sender_failing_spf_or_dkim_acts_on_nothing_and_the_verdicts_are_kept(
    service: Service, running: Settings, sendgrid: httpx.AsyncClient
) -> None:
    case_id = await resolved_case(service)
    resolution = await last_email(running, "case_resolved")
    to = str(resolution["Reply-To"])
    posts = [
        form(reply_to(resolution, "确认"), to, spf=b"softfail"),
        form(reply_to(resolution, "确认"), to, spf=b"fail"),
        form(reply_to(resolution, "确认"), to, dkim=b"{@yunfan.example.cn : fail}"),
    ]
    for body, content_type in posts:
        answer = await sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})
        assert answer.json()["outcome"] == "unverified", answer.text
    view = await service.cases.show(case_id)
    assert view.status is CaseStatus.RESOLVED
    assert [e.actor for e in view.timeline if "sender checks" in e.text] == [
        "unverified sender (email)"
    ] * 3
    with make_session_factory(make_engine(running.database_url))() as session:
        kept = session.execute(select(InboundMail.spf, InboundMail.dkim)).all()
    assert sorted(kept) == [
        ("fail", "{@yunfan.example.cn : pass}"),
        ("pass", "{@yunfan.example.cn : fail}"),
        ("softfail", "{@yunfan.example.cn : pass}"),
    ]

    # nor does a forged reply to a collections notice hold its suspension
    failure, notice = await in_collections(service, running)
    forged = reply_to(notice, "已付款。", sender=str(failure.customer.email))
    body, content_type = form(forged, str(notice["Reply-To"]), spf=b"softfail")
    answer = await sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})
    assert answer.json()["outcome"] == "unverified"
    assert (await service.collections.show(failure.invoice_id)).needs_attention is None

    # a signature of another domain failing beside the sender's passing one: it acts
    dkim = b"{@yunfan.example.cn : pass, @relay.example : fail}"
    body, content_type = form(reply_to(resolution, "确认"), to, dkim=dkim)
    answer = await sendgrid.post(PATH, content=body, headers={"Content-Type": content_type})
    assert answer.json()["outcome"] == "confirmed"


@pytest.mark.parametrize(
    ("spf", "dkim", "problem"),
    [
        ("pass", "{@yunfan.example.cn : pass}", None),
        (None, None, None),  # the CLI's file, the drop folder
        ("none", "none", None),  # a domain that publishes nothing, a message signed by none
        ("neutral", "{@mail.yunfan.example.cn : pass}", None),
        ("softfail", "{@yunfan.example.cn : pass}", "SPF softfail"),
        ("Fail (domain does not designate)", "", "SPF fail"),
        ("pass", "{@yunfan.example.cn : fail}", "DKIM fail for yunfan.example.cn"),
        ("pass", "{@mail.yunfan.example.cn : fail}", "DKIM fail for yunfan.example.cn"),
        ("pass", "{@yunfan.example.cn : fail, @yunfan.example.cn : pass}", None),
        ("pass", "{@other.example : fail}", None),  # not the sender's signature
    ],
)
def test_which_verdicts_say_the_sender_is_forged(
    spf: str | None, dkim: str | None, problem: str | None
) -> None:
    assert Verdicts(spf, dkim).problem(CUSTOMER) == problem


def test_verdicts_are_kept_as_text_and_bounded() -> None:
    posted = Verdicts.posted(b"pass\r\n", b"{@a.example : pass}" * 100)
    assert posted.spf == "pass" and len(posted.dkim or "") == 500
    assert Verdicts.posted(None, b"\xff\x00none") == Verdicts(None, "\ufffd none")


async def test_a_thread_whose_workflow_is_gone_is_recorded_not_retried(
    service: Service, running: Settings
) -> None:
    # a thread recorded for a workflow that is no more (past the namespace's retention)
    workflow_id = f"case-BC-GONE{uuid.uuid4().hex[:8].upper()}"
    secret = running.email_thread_secret
    token = thread_token(workflow_id, secret)
    with make_session_factory(make_engine(running.database_url))() as session:
        session.add(EmailThread(token=token, workflow_id=workflow_id))
        session.commit()
    raw = (
        f"From: {CUSTOMER}\r\nTo: billing-support+{token}@reply.partner.example.cn\r\n"
        "Subject: re\r\nMessage-ID: <gone-1@yunfan.example.cn>\r\n\r\n确认\r\n"
    ).encode()
    assert (await service.inbound.receive(raw)).outcome is Received.REFUSED
    again = await service.inbound.receive(raw)
    assert again.outcome is Received.REFUSED and again.duplicate
