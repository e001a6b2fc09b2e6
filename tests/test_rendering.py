"""The email and 21Vianet templates, rendered from the real templates directory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from activities.rendering import EXTRA_KEYS, TemplateRenderer, duration, money, when
from core.models import CaseStatus, CaseView, EmailTemplate, EventKind, Locale, Outcome, Severity
from tests.factories import (
    DESCRIPTION,
    OPENED_AT,
    QUESTION,
    case_for,
    make_case_details,
    make_customer,
    make_escalated_case_view,
    make_escalation,
    make_event,
    make_resolution,
    make_resolved_case_view,
    sample_extra,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SCRIPT = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(TEMPLATES)


@pytest.mark.parametrize("locale", list(Locale))
@pytest.mark.parametrize("template", list(EmailTemplate))
def test_every_email_renders_in_every_locale(
    renderer: TemplateRenderer, template: EmailTemplate, locale: Locale
) -> None:
    case = case_for(template)
    email = renderer.render(template, locale, {"case": case, "extra": sample_extra(template)})

    assert email.subject and "\n" not in email.subject
    assert case.case_id in email.subject
    for part in (email.text, email.html):
        assert case.case_id in part
        assert "None" not in part
    assert email.text.endswith("\n") and "\n\n\n" not in email.text
    assert email.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale.value}">' in email.html
    greeting = "尊敬的" if locale is Locale.ZH_CN else "Dear "
    assert (greeting in email.text) is template.to_customer


def test_every_email_has_its_folder_in_every_locale() -> None:
    for locale in Locale:
        folders = {p.name for p in (TEMPLATES / "email" / locale.value).iterdir() if p.is_dir()}
        assert folders == {t.value for t in EmailTemplate}
        for template in EmailTemplate:
            for part in ("subject.txt", "body.txt", "body.html"):
                assert (TEMPLATES / "email" / locale.value / template.value / part).is_file()


@pytest.mark.parametrize("template", sorted(EXTRA_KEYS))
def test_missing_extra_is_named(renderer: TemplateRenderer, template: EmailTemplate) -> None:
    with pytest.raises(ValueError, match=sorted(EXTRA_KEYS[template])[0]):
        renderer.render(template, Locale.ZH_CN, {"case": case_for(template), "extra": {}})


def test_strict_undefined_refuses_a_case_without_resolution(renderer: TemplateRenderer) -> None:
    open_case = case_for(EmailTemplate.CASE_ACKNOWLEDGED)
    with pytest.raises(UndefinedError):
        renderer.render(
            EmailTemplate.CASE_RESOLVED,
            Locale.EN_US,
            {"case": open_case, "extra": {"reopen_days": "7"}},
        )


@pytest.mark.parametrize("locale", list(Locale))
def test_customer_text_is_escaped_in_html_and_intact_in_text(
    renderer: TemplateRenderer, locale: Locale
) -> None:
    customer = make_customer(name="Yunfan <b>Tech</b> & Co")
    case = case_for(
        EmailTemplate.CASE_ACKNOWLEDGED,
        details=make_case_details(customer=customer, description=f"{DESCRIPTION}\n{SCRIPT}"),
    )
    email = renderer.render(EmailTemplate.CASE_ACKNOWLEDGED, locale, {"case": case, "extra": {}})
    assert SCRIPT in email.text
    assert "Yunfan <b>Tech</b> & Co" in email.text
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in email.html
    assert "Yunfan &lt;b&gt;Tech&lt;/b&gt; &amp; Co" in email.html

    question = renderer.render(
        EmailTemplate.INFO_REQUESTED, locale, {"case": case, "extra": {"question": SCRIPT}}
    )
    assert SCRIPT in question.text
    assert "<script>" not in question.html and "&lt;script&gt;" in question.html


@pytest.mark.parametrize("locale", list(Locale))
@pytest.mark.parametrize("template", list(EmailTemplate))
def test_no_email_lets_markup_through(
    renderer: TemplateRenderer, template: EmailTemplate, locale: Locale
) -> None:
    hostile = make_case_details(customer=make_customer(name=f"Evil {SCRIPT}"), description=SCRIPT)
    case = case_for(template, details=hostile)
    extra = {key: SCRIPT for key in sample_extra(template)}
    extra.update({k: v for k, v in sample_extra(template).items() if k in {"due_at", "clock"}})
    email = renderer.render(template, locale, {"case": case, "extra": extra})
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert SCRIPT in email.text


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        (Decimal("12340"), "CNY", "zh-CN", "¥12,340.00"),
        (Decimal("12340.00"), "CNY", "en-US", "CN¥12,340.00"),
        (Decimal("0.5"), "CNY", "zh-CN", "¥0.50"),
        (Decimal("1234567.89"), "CNY", "zh-CN", "¥1,234,567.89"),
        (Decimal("999999999999.99"), "CNY", "en-US", "CN¥999,999,999,999.99"),
        (Decimal("12340.50"), "USD", "en-US", "$12,340.50"),
        (Decimal("12340.50"), "USD", "zh-CN", "US$12,340.50"),
    ],
)
def test_money_is_exact(amount: Decimal, currency: str, locale: str, expected: str) -> None:
    assert money(amount, currency, locale) == expected


def test_when_is_china_standard_time() -> None:
    moment = datetime(2025, 3, 3, 16, 30, tzinfo=UTC)  # 00:30 the next day in Beijing
    assert when(moment, "zh-CN") == "2025年3月4日 00:30（北京时间）"
    assert when(moment, "en-US") == "Mar 4, 2025, 12:30 AM (China Standard Time)"
    assert when(moment.isoformat(), "zh-CN") == "2025年3月4日 00:30（北京时间）"
    assert when(moment.replace(tzinfo=None), "en-US") == when(moment, "en-US")


@pytest.mark.parametrize(
    ("value", "zh", "en"),
    [
        (timedelta(0), "0分钟", "0 minutes"),
        (timedelta(minutes=1), "1分钟", "1 minute"),
        (timedelta(hours=4), "4小时", "4 hours"),
        (timedelta(days=1, hours=4), "1天4小时", "1 day 4 hours"),
        (timedelta(days=3, hours=1, minutes=30), "3天1小时30分钟", "3 days 1 hour 30 minutes"),
        (timedelta(hours=-2), "2小时", "2 hours"),
    ],
)
def test_duration_is_readable(value: timedelta, zh: str, en: str) -> None:
    assert duration(value, "zh-CN") == zh
    assert duration(value, "en-US") == en


OUTCOME_WORDS = {
    Outcome.CREDIT_ISSUED: ("贷项通知单", "credit note"),
    Outcome.REFUND_ISSUED: ("退款", "refund"),
    Outcome.INVOICE_CORRECTED: ("已更正发票 G012345678", "corrected invoice G012345678"),
    Outcome.CHARGE_UPHELD: ("计费无误，因此予以维持", "billed correctly, so it stands"),
    Outcome.EXPLAINED: ("具体说明如下", "Here is what we found"),
}


@pytest.mark.parametrize("outcome", list(Outcome))
def test_resolution_names_the_outcome(renderer: TemplateRenderer, outcome: Outcome) -> None:
    amount = Decimal("500.00") if outcome.needs_amount else None
    resolution = make_resolution(outcome=outcome, credit_amount=amount, summary=SCRIPT)
    case = make_resolved_case_view(resolution=resolution)
    for locale, words in zip((Locale.ZH_CN, Locale.EN_US), OUTCOME_WORDS[outcome], strict=True):
        email = renderer.render(
            EmailTemplate.CASE_RESOLVED, locale, {"case": case, "extra": {"reopen_days": "7"}}
        )
        assert words in email.text and words in email.html
        assert SCRIPT in email.text and "&lt;script&gt;" in email.html
        if amount is not None:
            assert money(amount, "CNY", locale) in email.text
        assert ("7 天内" if locale is Locale.ZH_CN else "within 7 days") in email.text


def test_escalated_email_before_the_ticket_is_recorded(renderer: TemplateRenderer) -> None:
    case = make_escalated_case_view(
        status=CaseStatus.ESCALATION_PENDING,
        escalations=[make_escalation(ticket_number=None, ticket_recorded_at=None)],
    )
    zh = renderer.render(EmailTemplate.CASE_ESCALATED, Locale.ZH_CN, {"case": case, "extra": {}})
    en = renderer.render(EmailTemplate.CASE_ESCALATED, Locale.EN_US, {"case": case, "extra": {}})
    assert "正在代表您向世纪互联提交" in zh.text
    assert "we are raising a billing service request with 21Vianet on your behalf" in en.text
    reminder = renderer.render(
        EmailTemplate.OWNER_ESCALATION_REMINDER, Locale.EN_US, {"case": case, "extra": {}}
    )
    assert reminder.subject.endswith("ticket number not recorded yet")


def test_reminder_quotes_the_question_from_the_timeline(renderer: TemplateRenderer) -> None:
    case = case_for(EmailTemplate.CUSTOMER_REMINDER)
    for template in (EmailTemplate.CUSTOMER_REMINDER, EmailTemplate.OWNER_CUSTOMER_SILENT):
        email = renderer.render(template, Locale.ZH_CN, {"case": case, "extra": {}})
        assert QUESTION in email.text and QUESTION in email.html

    unasked = case_for(EmailTemplate.CUSTOMER_REMINDER, timeline=[])
    email = renderer.render(
        EmailTemplate.CUSTOMER_REMINDER, Locale.EN_US, {"case": unasked, "extra": {}}
    )
    assert "We asked you for some information about case" in email.text


def test_follow_up_reminder_counts_the_chases(renderer: TemplateRenderer) -> None:
    case = case_for(EmailTemplate.OWNER_ESCALATION_REMINDER)
    extra = {"ticket_number": "2503030010001234", "follow_up": "3"}
    zh = renderer.render(
        EmailTemplate.OWNER_ESCALATION_REMINDER, Locale.ZH_CN, {"case": case, "extra": extra}
    )
    en = renderer.render(
        EmailTemplate.OWNER_ESCALATION_REMINDER, Locale.EN_US, {"case": case, "extra": extra}
    )
    assert "这是第 3 次跟进。" in zh.text
    assert "This is follow-up #3." in en.text


def _escalation_context(case: CaseView) -> dict[str, object]:
    return {
        "case": case,
        "severity": Severity.A.value,
        "reason": f"需要世纪互联核实计量数据。\n{SCRIPT}",
        "escalation_no": 1,
    }


def test_vianet_request_carries_every_field(renderer: TemplateRenderer) -> None:
    case = make_escalated_case_view(
        timeline=[
            *make_escalated_case_view().timeline,
            make_event(7, EventKind.EMAIL_SENT, "system", "case_escalated"),
        ]
    )
    context = _escalation_context(case)
    title = renderer.render_text("vianet/request_title.txt", context)
    body = renderer.render_text("vianet/request_body.txt", context)

    details = case.details
    assert "\n" not in title.strip()
    for expected in (
        "Billing",
        details.customer.name,
        "G012345678",
        "¥12,340.00 CNY",
        case.case_id,
    ):
        assert expected in title
    for expected in (
        "严重性 Severity: A",
        "主题 Topic: 计费 Billing",
        case.case_id,
        details.customer.name,
        details.customer.tenant_id,
        str(details.subscription_id),
        "发票号 Invoice: G012345678",
        "争议金额 Amount disputed: ¥12,340.00 CNY",
        "2025年2月的发票 G012345678 中",
        SCRIPT,  # plain text for the portal: nothing escaped
        "需要世纪互联核实计量数据。",
    ):
        assert expected in body
    for event in case.timeline:
        if event.kind is EventKind.EMAIL_SENT:
            assert "Email sent" not in body  # the partner's bookkeeping stays out
            continue
        line = f"- {event.at.astimezone(UTC) + timedelta(hours=8):%Y-%m-%d %H:%M} (UTC+8)"
        assert f"{line} | " in body
        assert event.actor in body and event.text in body
    assert "2025-03-03 09:30 (UTC+8) | 创建 Opened | zhang.wei@partner.example.cn" in body


def test_vianet_request_without_invoice_or_subscription(renderer: TemplateRenderer) -> None:
    details = make_case_details(invoice_id=None, subscription_id=None, disputed_amount=Decimal(0))
    case = make_escalated_case_view(details=details, opened_at=OPENED_AT)
    title = renderer.render_text("vianet/request_title.txt", _escalation_context(case))
    body = renderer.render_text("vianet/request_body.txt", _escalation_context(case))
    assert "发票 Invoice" not in title and "None" not in title
    assert "订阅 ID Subscription ID: 无 none" in body
    assert "发票号 Invoice: 无 none" in body
    assert "None" not in body
