"""Customer satisfaction, through the real inbound service, worker and API (SQLite and, where
TEST_DATABASE_URL is set, PostgreSQL): a rating answering the closing letter is kept as the case's
and opens nothing; a rating with a complaint acts as any reply; the letter's signed links rate;
the report counts the ratings per agent and per month."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage as EmailMessageFile
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.ids import request_case_id
from core.models import CaseStatus, Confirm, EventKind, Priority
from core.ratings import rating_token
from core.settings import Settings
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from db.tables import Case, CaseRating, InboundMail
from reporting.html import render_html
from reporting.queries import build_report
from reporting.sections import sections
from service import Service
from service.errors import NotFound
from service.inbound import Outcome as Received
from service.ratings import Channel
from service.users import NewUser, Users
from tests.intake_support import SIGNED
from tests.test_inbound import (
    THREAD_SECRET,
    last_email,
    reply_to,
    resolved_case,
    service_fixture,
)
from tests.test_reports import NOW, POLICY, _case
from tests.workspace_support import ACCOUNTS, AGENT, PASSWORD, signed_in
from web.app import create_app as web_app
from worker import build_worker

PUBLIC = "https://billing-api.partner.example.cn"
ACKNOWLEDGED = "我们已收到您的账单问题"
__all__ = ["service_fixture"]  # the inbound tests' `service`, over this module's `running`


@pytest_asyncio.fixture(name="running")
async def running_fixture(
    dev_env: WorkflowEnvironment, tmp_path: Path, database_url: str
) -> AsyncIterator[Settings]:
    settings = Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        attachments_dir=tmp_path / "attachments",
        task_queue=f"billing-{uuid.uuid4()}",
        inbound_domain="reply.partner.example.cn",
        email_thread_secret=SecretStr(THREAD_SECRET),
        api_public_url=PUBLIC + "/",
        **SIGNED,
    )
    upgrade(settings.database_url)
    async with build_worker(dev_env.client, settings):
        yield settings


@pytest_asyncio.fixture(name="customer")
async def customer_fixture(service: Service, running: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API as a customer's browser reaches it: no credentials at all."""

    async def factory() -> Service:
        return service

    transport = httpx.ASGITransport(app=create_app(running, factory))
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as http:
        yield http


async def closed_case(service: Service, running: Settings) -> tuple[str, EmailMessageFile]:
    """A case the customer confirmed, and its closing letter (which asks for a rating)."""
    case_id = await resolved_case(service)
    await service.cases.act(case_id, Confirm(by="agent"))
    return case_id, await last_email(running, "case_closed", case_id)


def text_of(letter: EmailMessageFile) -> str:
    body = letter.get_body(("plain",))
    assert isinstance(body, EmailMessageFile)
    return str(body.get_content())


def html_of(letter: EmailMessageFile) -> str:
    body = letter.get_body(("html",))
    assert isinstance(body, EmailMessageFile)
    return str(body.get_content())


def follow_up_of(running: Settings, raw: bytes) -> str:
    """The case a reply would have opened: its id is made from the message (service/inbound.py)."""
    digest = hashlib.sha256(raw).hexdigest()
    with make_session_factory(make_engine(running.database_url))() as session:
        first = session.scalar(select(InboundMail.created_at).where(InboundMail.digest == digest))
    assert first is not None
    return request_case_id(first, "email", digest)


def acknowledgements(running: Settings) -> int:
    return sum(ACKNOWLEDGED in path.read_text() for path in running.outbox_dir.glob("*.eml"))


async def test_a_rating_to_a_closed_case_is_kept_and_opens_no_case(
    service: Service, running: Settings
) -> None:
    case_id, closing = await closed_case(service, running)
    assert "用 1（很不满意）到 5（非常满意）为我们打分" in text_of(closing)
    told = acknowledgements(running)  # the case's own acknowledgement
    raw = reply_to(closing, "5分，非常满意，谢谢！")

    received = await service.inbound.receive(raw)
    again = await service.inbound.receive(raw)

    assert (received.outcome, received.case_id) == (Received.RATED, case_id)
    assert again.duplicate and again.outcome is Received.RATED
    with pytest.raises(NotFound):  # the follow-up case this reply opened before
        await service.cases.show(follow_up_of(running, raw))
    rating = await service.ratings.of(case_id)
    assert rating is not None and (rating.score, rating.channel) == (5, Channel.EMAIL)
    assert acknowledgements(running) == told
    view = await service.cases.show(case_id)
    assert view.status is CaseStatus.CLOSED and view.reopen_count == 0


async def test_a_rating_in_the_reopen_window_neither_reopens_nor_confirms(
    service: Service, running: Settings
) -> None:
    case_id = await resolved_case(service)
    resolution = await last_email(running, "case_resolved", case_id)

    received = await service.inbound.receive(reply_to(resolution, "５分，非常满意，谢谢！"))

    assert received.outcome is Received.RATED
    view = await service.cases.show(case_id)
    assert view.status is CaseStatus.RESOLVED and view.reopen_count == 0
    assert EventKind.REOPENED not in [e.kind for e in view.timeline]
    rating = await service.ratings.of(case_id)
    assert rating is not None and rating.score == 5

    # a confirmation with a rating confirms, and the later rating is the case's
    confirmed = await service.inbound.receive(reply_to(resolution, "确认，4分"))
    assert confirmed.outcome is Received.CONFIRMED
    assert (await service.cases.show(case_id)).status is CaseStatus.CLOSED
    rating = await service.ratings.of(case_id)
    assert rating is not None and rating.score == 4


async def test_a_complaint_with_a_rating_still_reopens_and_follows_up(
    service: Service, running: Settings
) -> None:
    case_id = await resolved_case(service)
    resolution = await last_email(running, "case_resolved", case_id)

    reopened = await service.inbound.receive(reply_to(resolution, "1分，发票还是错的，请重新处理"))

    assert reopened.outcome is Received.REOPENED
    view = await service.cases.show(case_id)
    assert view.status is CaseStatus.OPEN and view.reopen_count == 1
    rating = await service.ratings.of(case_id)
    assert rating is not None and rating.score == 1

    ended = await resolved_case(service)
    await service.cases.act(ended, Confirm(by="agent"))
    closing = await last_email(running, "case_closed", ended)
    later = await service.inbound.receive(reply_to(closing, "2分。又收到了同样的错误账单。"))
    assert later.outcome is Received.FOLLOW_UP and later.case_id not in (None, ended)
    rating = await service.ratings.of(ended)
    assert rating is not None and rating.score == 2


async def test_the_closing_letters_links_rate_the_case_in_the_customers_language(
    service: Service, running: Settings, customer: httpx.AsyncClient
) -> None:
    case_id, closing = await closed_case(service, running)
    links = re.findall(rf"{re.escape(PUBLIC)}/r/\S+", text_of(closing))
    assert [link.split(".")[-2] for link in links] == ["1", "2", "3", "4", "5"]
    assert all(f'href="{link}"' in html_of(closing) for link in links)
    four, two = links[3].removeprefix(PUBLIC), links[1].removeprefix(PUBLIC)

    asked = await customer.get(four)  # a mail scanner opening every link rates nothing
    assert asked.status_code == 200 and "提交评分" in asked.text and "4 分" in asked.text
    assert asked.headers["referrer-policy"] == "no-referrer"
    assert await service.ratings.of(case_id) is None

    rated = await customer.post(four)
    again = await customer.post(four)
    assert rated.status_code == again.status_code == 200
    assert "感谢您的评价" in rated.text and "4 分" in rated.text
    first = await service.ratings.of(case_id)
    assert first is not None and (first.score, first.channel) == (4, Channel.LINK)
    assert await service.ratings.of(case_id) == first  # the same link again: the same rating

    changed = await customer.post(two)  # another score: the latest counts
    assert changed.status_code == 200
    latest = await service.ratings.of(case_id)
    assert latest is not None and latest.score == 2 and latest.rated_at >= first.rated_at

    # a customer who reads English is answered in English
    with make_session_factory(make_engine(running.database_url))() as session:
        session.execute(update(Case).where(Case.case_id == case_id).values(locale="en-US"))
        session.commit()
    english = await customer.post(two)
    assert "Thank you for your rating!" in english.text and "感谢" not in english.text


async def test_no_link_is_served_without_a_public_address(
    service: Service, running: Settings
) -> None:
    case_id, closing = await closed_case(service, running)
    link = re.findall(rf"{re.escape(PUBLIC)}/r/\S+", text_of(closing))[4].removeprefix(PUBLIC)

    async def factory() -> Service:
        return service

    off = create_app(running.model_copy(update={"api_public_url": None}), factory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=off), base_url=PUBLIC) as http:
        assert (await http.post(link)).status_code == 404
    assert await service.ratings.of(case_id) is None


async def test_a_forged_or_altered_link_is_refused_and_changes_nothing(
    service: Service, running: Settings, customer: httpx.AsyncClient
) -> None:
    case_id, closing = await closed_case(service, running)
    link = re.findall(rf"{re.escape(PUBLIC)}/r/\S+", text_of(closing))[4].removeprefix(PUBLIC)
    await customer.post(link)
    kept = await service.ratings.of(case_id)
    assert kept is not None and kept.score == 5

    path, _, mac = link.rpartition(".")
    other_mac = mac[:-1] + ("a" if mac[-1] != "a" else "b")
    forged = [
        f"{path}.{other_mac}",  # one character of the signature changed
        link.replace(".5.", ".1."),  # another score under the same signature
        "/r/" + rating_token(case_id, 1, SecretStr("x" * 32)),  # signed with another secret
        "/r/" + rating_token("BC-NOSUCHCASE", 1, SecretStr(THREAD_SECRET)),  # no such case
        "/r/not-a-token",
        "/r/" + "a" * 5000,
    ]
    for bad in forged:
        for answer in (await customer.get(bad), await customer.post(bad)):
            assert answer.status_code == 404, bad
            assert "链接无效" in answer.text and "This link is not valid" in answer.text
    assert await service.ratings.of(case_id) == kept


def test_the_report_counts_ratings_per_agent_and_month(
    session_factory: sessionmaker[Session],
) -> None:
    # 12:00 in Beijing on 30 November 2026; one rating given at 01:00 on 1 November, Beijing time
    ratings = [
        ("BC-1", "agent.wang@partner.example.cn", 5, NOW - timedelta(days=1)),
        ("BC-2", "agent.wang@partner.example.cn", 3, NOW - timedelta(days=2)),
        ("BC-3", "agent.li@partner.example.cn", 4, datetime(2026, 10, 31, 17, 0, tzinfo=UTC)),
        ("BC-4", None, 1, datetime(2026, 10, 31, 15, 0, tzinfo=UTC)),  # 23:00 on 31 October
        ("BC-5", "agent.li@partner.example.cn", 2, NOW - timedelta(days=90)),  # before the period
    ]
    with session_factory() as session:
        for case_id, owner, score, at in ratings:
            session.add(
                _case(
                    case_id,
                    CaseStatus.CLOSED,
                    Priority.NORMAL,
                    100 * timedelta(days=1),
                    now=NOW,
                    owner=owner,
                )
            )
            session.flush()
            session.add(
                CaseRating(
                    case_id=case_id,
                    score=score,
                    channel=Channel.EMAIL.value,
                    source_key=case_id,
                    rated_at=at,
                )
            )
        session.commit()
        report = build_report(session, now=NOW, since=NOW - timedelta(days=31), case_policy=POLICY)

    rendered = {s.key: s for s in sections(report)}
    assert rendered["csat-agent"].rows == [
        ["agent.wang@partner.example.cn", "2", "4.00", "50.0% (1/2)"],
        ["(unassigned)", "1", "1.00", "0.0% (0/1)"],
        ["agent.li@partner.example.cn", "1", "4.00", "100.0% (1/1)"],
    ]
    assert rendered["csat-month"].rows == [
        ["2026-10", "1", "1.00", "0.0% (0/1)"],
        ["2026-11", "3", "4.00", "66.7% (2/3)"],
    ]
    assert rendered["csat-agent"].footer == ["All", "4", "3.25", "50.0% (2/4)"]
    assert 'id="chart-csat-month"' in render_html(report, Path("templates").resolve())


async def test_the_case_page_shows_the_rating(service: Service, running: Settings) -> None:
    case_id, closing = await closed_case(service, running)
    assert (await service.inbound.receive(reply_to(closing, "五星好评"))).outcome is Received.RATED
    settings = running.model_copy(
        update={"web_session_secret": SecretStr("w" * 40), "web_secure_cookies": False}
    )
    name, roles, locale = ACCOUNTS[AGENT]
    await Users(settings).add(
        NewUser(email=AGENT, name=name, roles=roles, locale=locale, password=SecretStr(PASSWORD))
    )

    async def factory() -> Service:
        return service

    agent = await signed_in(web_app(settings, factory), AGENT)
    page = await agent.get(f"/cases/{case_id}")
    await agent.aclose()

    assert page.status_code == 200
    assert re.search(
        r"满意度评分</dt><dd data-testid=\"rating\">5 / 5 · 客户回复邮件评分", page.text
    )
