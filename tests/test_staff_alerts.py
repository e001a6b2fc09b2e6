"""Staff alerts to the group robots (docs/staff-alerts.md): the outbox the email activity fills,
the dispatcher that posts it, against stand-ins checking each service's documented format and
signature (tests/robot_standin.py), on the real databases; then through the real worker.

The dispatcher's, the client's and the stand-ins' clock is one FakeClock the tests move: a rate
limit's minute or a backoff passes without waiting for it."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.alert_dispatch import AlertDispatcher
from activities.alerts import AlertOutbox
from activities.email import EmailActivities
from activities.rendering import TemplateRenderer
from activities.robots import RobotClient
from activities.senders import FileOutboxSender
from chaos.harness import FAST_POLICY
from core.alerts import AlertKind, parse_robots
from core.models import EmailMessage, EmailTemplate, Locale, NoticeState
from core.settings import Settings
from db.migrate import upgrade
from db.tables import StaffAlert
from service import Service
from tests.clock_support import eventually
from tests.factories import (
    CASE_ID,
    COLLECTIONS_INVOICE_ID,
    OWNER,
    make_collections_view,
    make_email_message,
)
from tests.robot_standin import FakeClock, RobotStandIn
from tests.workflow_support import billing_failure
from worker import build_worker, dispatch_alerts

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
BASE = "https://billing.partner.example.cn"
ASKED = datetime(2025, 4, 18, 1, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def robots(clock: FakeClock) -> Iterator[RobotStandIn]:
    with RobotStandIn(clock) as standin:
        yield standin


def outbox(
    sessions: sessionmaker[Session], spec: str, locale: Locale = Locale.ZH_CN
) -> AlertOutbox:
    return AlertOutbox(parse_robots(spec), TemplateRenderer(TEMPLATES), sessions, BASE, locale)


@pytest_asyncio.fixture
async def client(clock: FakeClock) -> AsyncIterator[RobotClient]:
    robot_client = RobotClient(clock=clock.epoch)
    yield robot_client
    await robot_client.aclose()


def dispatcher(
    sessions: sessionmaker[Session], spec: str, client: RobotClient, clock: FakeClock, **kw: Any
) -> AlertDispatcher:
    return AlertDispatcher(parse_robots(spec), sessions, client, clock=clock, **kw)


def alerts(sessions: sessionmaker[Session]) -> list[StaffAlert]:
    with sessions() as session:
        return list(session.scalars(select(StaffAlert).order_by(StaffAlert.id)))


def sla_breach(key: str = f"{CASE_ID}/manager_sla_breach/1") -> EmailMessage:
    return make_email_message(EmailTemplate.MANAGER_SLA_BREACH, key=key)


def approval_asked(
    key: str = "collections-G024681357/run/3-manager_needs_attention",
) -> EmailMessage:
    question = f"invoice {COLLECTIONS_INVOICE_ID} is due for suspension: approve it or refuse it"
    return make_email_message(
        EmailTemplate.MANAGER_NEEDS_ATTENTION,
        key=key,
        case=None,
        collections=make_collections_view(approval_asked_at=ASKED),
        extra={"step": question, "error": ""},
    )


def failed(service: str) -> float:
    value = REGISTRY.get_sample_value(
        "billing_staff_alerts_total", {"service": service, "outcome": "failed"}
    )
    return value or 0.0


# --------------------------------------------------------------------------- formats, signatures


async def test_each_robot_gets_the_alert_as_its_service_documents_it_signed(
    session_factory: sessionmaker[Session],
    robots: RobotStandIn,
    client: RobotClient,
    clock: FakeClock,
) -> None:
    spec = ",".join((robots.wecom(), robots.dingtalk(), robots.feishu()))
    assert outbox(session_factory, spec).queue(sla_breach()) == 3
    assert await dispatcher(session_factory, spec, client, clock).run_once() == 3
    assert sorted(r.service for r in robots.received) == ["dingtalk", "feishu", "wecom"]
    for received in robots.received:
        assert received.title == f"SLA 超时：工单 {CASE_ID}"
        assert f"({BASE}/cases/{CASE_ID})" in received.text
        assert f"({BASE}/queues/sla)" in received.text
        assert OWNER in received.text
    assert {row.status for row in alerts(session_factory)} == {"sent"}


@pytest.mark.parametrize(
    ("message", "kind", "page"),
    [
        (sla_breach(), AlertKind.SLA_BREACH, f"/cases/{CASE_ID}"),
        (approval_asked(), AlertKind.APPROVAL_ASKED, f"/collections/{COLLECTIONS_INVOICE_ID}"),
        (
            make_email_message(
                EmailTemplate.MANAGER_NEEDS_ATTENTION,
                case=None,
                collections=make_collections_view(final_notice=NoticeState.UNDELIVERED),
                extra={"step": "the final notice was not delivered: correct it", "error": ""},
            ),
            AlertKind.FINAL_NOTICE_BOUNCED,
            f"/collections/{COLLECTIONS_INVOICE_ID}",
        ),
        (
            make_email_message(EmailTemplate.OWNER_EMAIL_BOUNCED),
            AlertKind.EMAIL_BOUNCED,
            f"/cases/{CASE_ID}",
        ),
        (
            make_email_message(
                EmailTemplate.MANAGER_NEEDS_ATTENTION,
                extra={"step": "persist_case", "error": "OperationalError: disk full"},
            ),
            AlertKind.NEEDS_ATTENTION,
            f"/cases/{CASE_ID}",
        ),
    ],
)
@pytest.mark.parametrize("locale", [Locale.ZH_CN, Locale.EN_US])
def test_every_kind_is_in_the_staff_language_and_links_where_they_act(
    session_factory: sessionmaker[Session],
    message: EmailMessage,
    kind: AlertKind,
    page: str,
    locale: Locale,
) -> None:
    spec = "wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
    assert outbox(session_factory, spec, locale).queue(message) == 1
    (row,) = alerts(session_factory)
    assert row.kind == kind.value and row.status == "pending"
    assert f"({BASE}{page})" in row.text
    if locale is Locale.ZH_CN:
        # ids, addresses and links aside, no English word (the step's own words stay out)
        words = re.sub(
            r"\(https?://[^)]*\)|[\w.+-]+@[\w.-]+|[A-Z]{1,3}[-\w]*\d[-\w]*", "", row.text
        )
        english = set(re.findall(r"[A-Za-z]{3,}", row.title + words)) - {
            "SLA"
        }  # as zh-CN writes it
        assert english == set()
    assert "OperationalError" not in row.text  # the error stays in the email and on the page


# --------------------------------------------------------------------------- rate limits


async def test_a_robot_s_rate_limit_queues_and_never_drops(
    session_factory: sessionmaker[Session],
    robots: RobotStandIn,
    client: RobotClient,
    clock: FakeClock,
) -> None:
    spec = robots.wecom()
    queue = outbox(session_factory, spec)
    for n in range(25):
        queue.queue(sla_breach(key=f"{CASE_ID}/manager_sla_breach/{n}"))
    posting = dispatcher(session_factory, spec, client, clock)
    assert await posting.run_once() == 20  # WeCom's 20 a minute
    assert await posting.run_once() == 0
    assert robots.answers["wecom"] == 20  # it did not even try
    clock.advance(61)
    assert await posting.run_once() == 5
    assert len(robots.of("wecom")) == 25
    assert {row.status for row in alerts(session_factory)} == {"sent"}


async def test_a_too_many_answer_keeps_the_alert_until_the_robot_takes_it(
    session_factory: sessionmaker[Session],
    robots: RobotStandIn,
    client: RobotClient,
    clock: FakeClock,
) -> None:
    """Another program posting to the same robot used its budget: the robot says so."""
    spec = f"{robots.dingtalk()},{robots.feishu()}"
    outbox(session_factory, spec).queue(sla_breach())
    robots.limit("dingtalk")
    robots.limit("feishu")
    posting = dispatcher(session_factory, spec, client, clock)
    assert await posting.run_once() == 0
    rows = alerts(session_factory)
    assert {row.status for row in rows} == {"pending"}
    assert all(row.error and ("130101" in row.error or "11232" in row.error) for row in rows)
    clock.advance(59)
    assert await posting.run_once() == 0
    assert robots.answers == {"dingtalk": 1, "feishu": 1}  # paused: not asked again
    clock.advance(2)  # Feishu's minute is over; DingTalk throttles for 10
    assert await posting.run_once() == 1
    clock.advance(600)
    assert await posting.run_once() == 1
    assert {row.status for row in alerts(session_factory)} == {"sent"}
    assert len(robots.received) == 2


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("robot", "service", "code"),
    [
        (lambda s: s.wecom(key="a-key-that-was-deleted"), "wecom", "93000"),
        (lambda s: s.dingtalk(secret="SECwrong"), "dingtalk", "310000"),
        (lambda s: s.dingtalk(token="no-such-token"), "dingtalk", "300001"),
        (lambda s: s.feishu(secret="wrong"), "feishu", "19021"),
        (lambda s: s.feishu(hook="deleted-hook"), "feishu", "19001"),
    ],
)
async def test_a_refused_robot_fails_the_alert_for_good_and_says_so(
    session_factory: sessionmaker[Session],
    robots: RobotStandIn,
    client: RobotClient,
    clock: FakeClock,
    robot: Any,
    service: str,
    code: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = robot(robots)
    outbox(session_factory, spec).queue(approval_asked())
    before = failed(service)
    posting = dispatcher(session_factory, spec, client, clock)
    await posting.run_once()
    (row,) = alerts(session_factory)
    assert row.status == "failed" and code in (row.error or "")
    assert failed(service) == before + 1
    assert any(code in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    for _ in range(3):  # never again
        clock.advance(3600)
        await posting.run_once()
    assert robots.answers[service] == 1 and robots.received == []


async def test_an_error_is_retried_with_backoff_then_given_up_visibly(
    session_factory: sessionmaker[Session],
    robots: RobotStandIn,
    client: RobotClient,
    clock: FakeClock,
) -> None:
    spec = robots.wecom()
    queue = outbox(session_factory, spec)
    queue.queue(sla_breach())
    robots.fail("wecom")
    posting = dispatcher(session_factory, spec, client, clock, give_up_after=timedelta(hours=1))
    assert await posting.run_once() == 0
    (row,) = alerts(session_factory)
    assert row.status == "pending" and row.due_at == clock.now + timedelta(seconds=30)
    assert await posting.run_once() == 0 and robots.answers["wecom"] == 1  # backing off
    clock.advance(30)
    assert await posting.run_once() == 1
    # a robot down for longer than give_up_after: failed, visibly
    queue.queue(sla_breach(key="another"))
    robots.fail("wecom", times=1000)
    before = failed("wecom")
    for _ in range(12):
        await posting.run_once()
        clock.advance(15 * 60)
    last = alerts(session_factory)[-1]
    assert last.status == "failed" and (last.error or "").startswith("gave up")
    assert failed("wecom") == before + 1


async def test_a_dead_dispatcher_s_claim_is_taken_after_its_lease(
    session_factory: sessionmaker[Session],
    robots: RobotStandIn,
    client: RobotClient,
    clock: FakeClock,
) -> None:
    spec = robots.wecom()
    outbox(session_factory, spec).queue(sla_breach())
    dead = dispatcher(session_factory, spec, client, clock)
    assert dead._claim(dead.robots[0]) is not None  # then it died, before posting
    alive = dispatcher(session_factory, spec, client, clock)
    assert await alive.run_once() == 0
    clock.advance(61)
    assert await alive.run_once() == 1
    assert len(robots.received) == 1


# --------------------------------------------------------------------------- the outbox


def test_a_retried_email_activity_queues_one_alert_per_robot(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    spec = (
        "wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k,"
        "feishu:https://open.feishu.cn/open-apis/bot/v2/hook/h#s"
    )
    email = EmailActivities(
        TemplateRenderer(TEMPLATES),
        FileOutboxSender(tmp_path / "outbox"),
        session_factory,
        from_address="billing-support@partner.example.cn",
        from_name="Billing Support",
        alerts=outbox(session_factory, spec),
    )
    message = approval_asked()
    first = ActivityEnvironment().run(email.send_email, message)
    again = ActivityEnvironment().run(email.send_email, message)  # a retry after a lost answer
    assert not first.duplicate and again.duplicate
    rows = alerts(session_factory)
    assert len(rows) == 2 and {r.kind for r in rows} == {AlertKind.APPROVAL_ASKED.value}
    # a customer's email is no alert
    ActivityEnvironment().run(email.send_email, make_email_message(EmailTemplate.CASE_CLOSED))
    assert len(alerts(session_factory)) == 2


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("slack:https://hooks.slack.com/x", "STAFF_ALERTS item 1: begins with one of"),
        ("wecom:http://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", "https:// URL"),
        ("wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k#s", "no signing secret"),
        ("dingtalk:https://oapi.dingtalk.com/robot/send", "access_token parameter"),
        ("dingtalk:https://oapi.dingtalk.com/robot/send?access_token=t#", "secret after '#'"),
        ("feishu:https://open.feishu.cn/open-apis/bot/v2/hook/", "path is /open-apis"),
        ("feishu:https://evil.example.com/open-apis/bot/v2/hook/h", "is on open.feishu.cn"),
        (
            "wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k,"
            "wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
            "item 2: the same robot is listed twice",
        ),
        ("wecom", "write wecom:<webhook URL>"),
    ],
)
def test_staff_alerts_setting_errors_name_the_setting_never_the_key(value: str, said: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(staff_alerts=SecretStr(value))
    assert said in str(raised.value)
    assert "key=k" not in str(raised.value) and "#s" not in str(raised.value)


def test_staff_alerts_setting_parses_each_service_with_its_secret() -> None:
    settings = Settings(
        staff_alerts=SecretStr(
            " wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k ,"
            "dingtalk:https://oapi.dingtalk.com/robot/send?access_token=t#SECabc,"
            "feishu:https://open.feishu.cn/open-apis/bot/v2/hook/h#s3cret,"
            "dingtalk:http://127.0.0.1:8999/robot/send?access_token=local"
        ),
        web_public_url="https://billing.partner.example.cn/",
    )
    robots = settings.robots()
    assert [r.service.value for r in robots] == ["wecom", "dingtalk", "feishu", "dingtalk"]
    assert [r.secret.get_secret_value() if r.secret else None for r in robots] == [
        None,
        "SECabc",
        "s3cret",
        None,
    ]
    assert "SECabc" not in repr(settings) and "key=k" not in repr(robots)
    assert settings.workspace_url() == "https://billing.partner.example.cn"
    assert Settings().workspace_url() == "http://127.0.0.1:8010"
    with pytest.raises(ValidationError, match="WEB_PUBLIC_URL"):
        Settings(web_public_url="billing.partner.example.cn")


# --------------------------------------------------------------------------- the real worker


async def test_an_approval_asked_by_a_real_workflow_reaches_the_robots_with_its_link(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A collections policy whose suspension waits for a manager, on the real worker: the
    manager's email queues the alert, the worker's dispatcher posts it, signed, with the
    invoice page where the manager approves or refuses."""
    policy = tmp_path / "approval.toml"
    policy.write_text(
        FAST_POLICY.replace('action = "suspend"', 'action = "suspend"\napproval = "manager"')
    )
    with RobotStandIn(lambda: datetime.now(UTC)) as robots:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'billing.db'}",
            outbox_dir=tmp_path / "outbox",
            task_queue=f"alerts-{uuid.uuid4()}",
            collections_policy_file=policy,
            staff_alerts=SecretStr(f"{robots.dingtalk()},{robots.feishu()}"),
            web_public_url="https://billing.partner.example.cn",
        )
        upgrade(settings.database_url)
        failure = billing_failure(amount="5000.00")
        async with build_worker(dev_env.client, settings):
            posting = asyncio.create_task(dispatch_alerts(settings))
            try:
                await Service(dev_env.client, settings).collections.report_failure(failure)
                await eventually(lambda: len(robots.received) == 2, "both robots posted")
            finally:
                posting.cancel()
        link = f"(https://billing.partner.example.cn/collections/{failure.invoice_id})"
        for received in robots.received:
            assert received.title == f"待审批：账单 {failure.invoice_id} 暂停服务"
            assert link in received.text
