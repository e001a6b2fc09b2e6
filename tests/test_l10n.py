"""The workspace's language without a server: amounts read as people type them (one parser for
every money field), the workflows' English sentences said in Chinese, the report's tables in the
reader's language from reporting's own computations. (The whole workspace in a browser:
test_l10n_browser.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from core.formatting import NotAnAmount, money, parse_amount
from core.models import Locale, Outcome, Resolve
from service import Service
from service.users import NewUser, Role, Users
from tests.workspace_support import PASSWORD, signed_in, workspace_settings
from web.actions import CASE_ACTIONS, Field, Kind
from web.app import create_app
from web.forms import BadFields, problems_of, read_amounts
from web.i18n import translations
from web.wording import PHRASES, said

ZH = translations(Locale.ZH_CN).gettext


@pytest.mark.parametrize(
    ("typed", "amount"),
    [
        ("4300", "4300"),
        ("4,300.00", "4300.00"),
        ("¥4,300.00", "4300.00"),
        ("￥4300", "4300"),
        ("4300 元", "4300"),
        ("CNY 4,300.50", "4300.50"),
        ("４３００.５", "4300.5"),  # full-width, as a Chinese keyboard types it
        (" 12,345,678.9 ", "12345678.9"),
    ],
)
def test_an_amount_as_people_type_it(typed: str, amount: str) -> None:
    assert parse_amount(typed) == Decimal(amount)


@pytest.mark.parametrize("typed", ["", "abc", "四千三", "4,30.00", "4.3.0", "1e5", "NaN", "¥", "-"])
def test_what_is_no_amount_is_refused(typed: str) -> None:
    with pytest.raises(NotAnAmount):
        parse_amount(typed)


@given(st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2))
def test_every_amount_the_workspace_shows_reads_back(amount: Decimal) -> None:
    assert parse_amount(money(amount)) == amount


def test_a_form_names_the_money_field_that_is_no_amount() -> None:
    fields = (Field("amount", "Amount", Kind.MONEY), Field("reason", "Reason"))
    assert read_amounts({"amount": "¥4,300.00", "reason": "x"}, fields)["amount"] == Decimal(
        "4300.00"
    )
    with pytest.raises(BadFields) as refused:
        read_amounts({"amount": "lots"}, fields)
    (problem,) = refused.value.problems
    assert problem.field == "amount" and ZH(problem.label) == "金额"
    assert ZH(problem.message).startswith("必须是金额")


def shown(moment: datetime) -> str:
    return moment.isoformat()


@pytest.mark.parametrize(
    ("english", "chinese"),
    [
        (
            "cannot record a 21Vianet ticket number on case BC-1: it is open "
            "(needs escalation-pending)",
            "工单 BC-1 当前为「处理中」：现在无法登记世纪互联工单号"
            "（仅在「待提交世纪互联」时可以）。",
        ),
        (
            "credit_amount 9000.00 exceeds the disputed amount 4300.00 CNY",
            "抵扣或退款金额 ¥9,000.00 超过争议金额 ¥4,300.00。",
        ),
        ("the agent: first response", "客服首次响应"),
        ("SLA: resolution reminder", "SLA 解决：提醒"),
        ("email-sent", "邮件已发送"),
        ("case_acknowledged", "受理确认"),
        ("A note a person wrote", "A note a person wrote"),  # as written
    ],
)
def test_the_workflows_sentences_in_chinese(english: str, chinese: str) -> None:
    assert said(english, ZH, shown) == chinese


def test_every_known_sentence_has_its_chinese() -> None:
    untranslated = [p.message for p in PHRASES if ZH(p.message) == p.message]
    assert untranslated == []


def test_a_moment_in_a_sentence_is_shown_in_china_time() -> None:
    text = said("payment; next step reminder on 2026-12-10 01:00 UTC", ZH, shown)
    assert (
        text == f"客户付款；下一步：付款提醒，{datetime(2026, 12, 10, 1, tzinfo=UTC).isoformat()}"
    )


async def test_the_report_page_for_managers_and_finance_in_their_language(tmp_path: Path) -> None:
    """The report page needs the database only: the app's service is never asked for."""
    settings = workspace_settings(tmp_path)

    async def no_service() -> Service:
        raise AssertionError("the report page asks no workflow")

    app = create_app(settings, no_service)
    users = Users(settings)
    people = {
        "zh.manager@partner.example.cn": (Role.MANAGER, Locale.ZH_CN),
        "en.finance@partner.example.cn": (Role.FINANCE, Locale.EN_US),
        "zh.agent@partner.example.cn": (Role.AGENT, Locale.ZH_CN),
    }
    for email, (role, locale) in people.items():
        new = NewUser(
            email=email, name="读者", roles=[role], locale=locale, password=SecretStr(PASSWORD)
        )
        await users.add(new)
    chinese = await signed_in(app, "zh.manager@partner.example.cn")
    page = (await chinese.get("/report")).text
    assert "积压工单（按状态和时长）" in page and "Backlog by status" not in page
    assert page.count('data-testid="chart"') == 7
    english = await signed_in(app, "en.finance@partner.example.cn", "10.0.0.2")
    answer = await english.get("/report", params={"days": "0", "currency": "nonsense"})
    assert answer.status_code == 200 and "Backlog by status and age" in answer.text
    assert "unsafe-inline" in answer.headers["content-security-policy"]  # plotly's styles
    assert "script-src 'self';" in answer.headers["content-security-policy"]
    script = await english.get("/report/plotly.js")
    assert script.status_code == 200 and "plotly" in script.text[:2000].lower()
    agent = await signed_in(app, "zh.agent@partner.example.cn", "10.0.0.3")
    assert (await agent.get("/report")).status_code == 403


def test_a_resolution_s_amount_is_named_by_its_field() -> None:
    """The model's own check names the field first: the problem goes beside that field."""
    with pytest.raises(ValidationError) as wrong:
        Resolve(outcome=Outcome.CREDIT_ISSUED, summary="已贷记", by="agent@partner.example.cn")
    (problem,) = problems_of(wrong.value, CASE_ACTIONS["resolve"].fields)
    assert problem.field == "credit_amount" and ZH(problem.message).startswith("须与处理结果相符")


def test_what_needs_a_person_is_said_in_chinese() -> None:
    flagged = (
        "NEEDS ATTENTION: invoice G1 is due for suspension: approve it (approve-suspension "
        "--reason) or refuse it (refuse-suspension --reason)"
    )
    assert said(flagged, ZH, shown) == "需要处理：账单 G1 已到暂停服务的步骤：请经理批准或拒绝。"
