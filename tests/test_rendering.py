"""The email and 21Vianet templates, rendered from the real templates directory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError
from pydantic import ValidationError

from activities.alerts import links
from activities.rendering import TemplateRenderer
from core.formatting import day, duration, when
from core.formatting import localized_money as money
from core.models import (
    About,
    AccountView,
    CaseStatus,
    CaseView,
    Category,
    CollectionsStatus,
    EmailMessage,
    EmailTemplate,
    EventKind,
    Locale,
    Outcome,
    Priority,
    Severity,
    VianetInvoiceStatus,
)
from core.models.collections import Overpayment
from tests.factories import (
    DESCRIPTION,
    OPENED_AT,
    QUESTION,
    SECOND_SUBSCRIPTION_ID,
    SUBSCRIPTION_ID,
    SUSPENDED_AT,
    case_for,
    collections_for,
    make_case_details,
    make_customer,
    make_email_message,
    make_escalated_case_view,
    make_escalation,
    make_event,
    make_resolution,
    make_resolved_case_view,
    make_suspended_collections_view,
    sample_extra,
    vianet_invoice_for,
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
    message = make_email_message(template, locale=locale)
    email = renderer.render_message(message)

    # a case email names its case, a collections email its invoice, everywhere
    assert email.subject and "\n" not in email.subject
    assert message.subject_id in email.subject
    for part in (email.text, email.html):
        assert message.subject_id in part
        assert "None" not in part
    assert email.text.endswith("\n") and "\n\n\n" not in email.text
    assert email.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale.value}">' in email.html
    greeting = "尊敬的" if locale is Locale.ZH_CN else "Dear "
    assert (greeting in email.text) is template.to_customer


def test_no_email_needs_the_timeline() -> None:
    """The workflows send no timeline with an email (it is the database's, and it grows): the two
    templates that quote the customer's last question get it as data, and look in a timeline only
    for an email queued before (its old input still has one)."""
    readers = {
        folder.name
        for path in (TEMPLATES / "email").rglob("*")
        if path.is_file() and "timeline" in path.read_text(encoding="utf-8")
        for folder in [path.parent]
    }
    assert readers == {"customer_reminder", "owner_customer_silent"}
    for name in readers:
        assert "question" in EmailTemplate(name).data.model_fields


def test_every_email_has_its_folder_in_every_locale() -> None:
    for locale in Locale:
        folders = {p.name for p in (TEMPLATES / "email" / locale.value).iterdir() if p.is_dir()}
        assert folders == {t.value for t in EmailTemplate}
        for template in EmailTemplate:
            for part in ("subject.txt", "body.txt", "body.html"):
                assert (TEMPLATES / "email" / locale.value / template.value / part).is_file()


NEEDS_DATA = [
    t for t in EmailTemplate if any(f.is_required() for f in t.data.model_fields.values())
]


def test_the_emails_that_need_data_are_known() -> None:
    assert EmailTemplate.CASE_RESOLVED in NEEDS_DATA
    assert EmailTemplate.CASE_ACKNOWLEDGED not in NEEDS_DATA


@pytest.mark.parametrize("template", NEEDS_DATA)
def test_missing_data_is_named_when_the_email_is_built(template: EmailTemplate) -> None:
    """A workflow builds the email's data when it queues it: a missing field fails there."""
    required = sorted(n for n, f in template.data.model_fields.items() if f.is_required())
    with pytest.raises(ValidationError) as caught:
        make_email_message(template, extra={})
    missing = {str(e["loc"][-1]) for e in caught.value.errors() if e["type"] == "missing"}
    assert missing == set(required)


def test_an_old_activity_input_with_extra_still_reads() -> None:
    """An email scheduled before the data was typed (``template`` + ``extra``) is still sent."""
    typed = make_email_message(EmailTemplate.CASE_RESOLVED)
    old = typed.model_dump(mode="json", exclude={"data"})
    old.update(template="case_resolved", extra={"reopen_days": "7", "gone": "x"})
    assert EmailMessage.model_validate(old).data == typed.data


@pytest.mark.parametrize("template", [t for t in EmailTemplate if t.about is not None])
def test_an_email_needs_the_view_it_is_about(
    renderer: TemplateRenderer, template: EmailTemplate
) -> None:
    # the other kind of view is no substitute: a collections email has no case, and vice versa
    about, other = (
        ("collections", "case")
        if template.about is About.COLLECTIONS
        else ("vianet_invoice", "case")
        if template.about is About.VIANET_INVOICE
        else ("account", "collections")
        if template.about is About.ACCOUNT
        else ("case", "collections")
    )
    view = case_for(template) if other == "case" else collections_for(template)
    with pytest.raises(ValueError, match=f"rendered with {about}"):
        renderer.render(template, Locale.ZH_CN, {other: view, "extra": sample_extra(template)})


@pytest.mark.parametrize("locale", list(Locale))
@pytest.mark.parametrize("about", ["case", "collections", "vianet_invoice", "account"])
def test_the_attention_email_is_about_any_workflow(
    renderer: TemplateRenderer, about: str, locale: Locale
) -> None:
    template = EmailTemplate.MANAGER_NEEDS_ATTENTION
    customer = make_customer()
    view = {
        "case": case_for(template),
        "collections": collections_for(template),
        "vianet_invoice": vianet_invoice_for(template),
        "account": AccountView(
            tenant_id=customer.tenant_id, workflow_id="account-1", customer=customer
        ),
    }[about]
    update = {"case": None, about: view, "locale": locale}
    message = make_email_message(template).model_copy(update=update)
    page = links(message, "https://billing.partner.cn")
    email = renderer.render_message(message, page)
    # the page where a manager acts, never a command line (tests/test_attention.py has more)
    assert page["page"] in email.text and page["page"] in email.html
    assert "starter.py" not in email.text and "retry-step" not in email.text
    assert "DataRefused" in email.html and message.subject_id in email.subject


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


# extra values the templates parse (dates, amounts) or look up (SLA clock names) stay well-formed
STRUCTURED_EXTRA = {
    "due_at", "clock", "suspension_date", "amount", "failure",
    "currency", "remaining", "invoice_balance",
}  # fmt: skip


@pytest.mark.parametrize("locale", list(Locale))
@pytest.mark.parametrize("template", list(EmailTemplate))
def test_no_email_lets_markup_through(
    renderer: TemplateRenderer, template: EmailTemplate, locale: Locale
) -> None:
    evil = make_customer(name=f"Evil {SCRIPT}")
    extra = {key: SCRIPT for key in sample_extra(template)}
    extra.update({k: v for k, v in sample_extra(template).items() if k in STRUCTURED_EXTRA})
    if template.about is About.COLLECTIONS:
        subject: dict[str, object] = {"collections": collections_for(template, customer=evil)}
    elif template.about is About.VIANET_INVOICE:
        subject = {"vianet_invoice": vianet_invoice_for(template, recorded_by=f"Evil {SCRIPT}")}
    elif template.about is About.ACCOUNT:
        account = make_email_message(template).account
        assert account is not None
        subject = {"account": account.model_copy(update={"customer": evil})}
    else:
        hostile = make_case_details(customer=evil, description=SCRIPT)
        subject = {"case": case_for(template, details=hostile)}
    email = renderer.render(template, locale, {**subject, "extra": extra})
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
    Outcome.INVOICE_CORRECTED: ("已更正账单 G012345678", "corrected invoice G012345678"),
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
        "账单编号 Invoice: G012345678",
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
    assert "账单 Invoice" not in title and "None" not in title
    assert "订阅 ID Subscription ID: 无 none" in body
    assert "账单编号 Invoice: 无 none" in body
    assert "None" not in body


def _render(
    renderer: TemplateRenderer,
    template: EmailTemplate,
    locale: Locale,
    extra: dict[str, Any] | None = None,
    **fields: object,
) -> tuple[EmailMessage, str]:
    """The message (sample state, with ``fields`` and the data's ``extra`` replaced) and its text
    and HTML, joined."""
    message = make_email_message(template, locale=locale)
    if extra is not None:
        fields["data"] = template.data.model_validate({"template": template, **extra})
    message = message.model_copy(update=fields)
    email = renderer.render_message(message)
    return message, "\n".join((email.subject, email.text, email.html))


@pytest.mark.parametrize("locale", list(Locale))
def test_collections_emails_state_the_balance_in_money(
    renderer: TemplateRenderer, locale: Locale
) -> None:
    for template in [t for t in EmailTemplate if t.about is About.COLLECTIONS]:
        message, email = _render(renderer, template, locale)
        assert message.collections is not None
        balance = money(message.collections.balance, "CNY", locale.value)
        assert balance in email, template
    _, received = _render(renderer, EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED, locale)
    assert money("20000.00", "CNY", locale.value) in received
    assert money("28760.00", "CNY", locale.value) in received


@pytest.mark.parametrize("locale", list(Locale))
def test_final_notice_names_the_suspension_date(renderer: TemplateRenderer, locale: Locale) -> None:
    email = renderer.render_message(
        make_email_message(EmailTemplate.COLLECTIONS_FINAL_NOTICE, locale=locale)
    )
    # the subject names the day; the letter the moment
    assert day(SUSPENDED_AT, locale.value) in email.subject
    assert when(SUSPENDED_AT, locale.value) not in email.subject
    date = when(SUSPENDED_AT, locale.value)
    assert date in email.text and date in email.html
    assert SUBSCRIPTION_ID in email.text


# 21Vianet's retention: 90 days, up to 120, its decision (docs/platform.md)
DELETION_WORDS = {
    Locale.ZH_CN: ("一般保留 90 天", "最长可能保留 120 天", "由世纪互联决定"),
    Locale.EN_US: ("normally kept for 90 days", "at most 120 days", "21Vianet decides"),
}


@pytest.mark.parametrize("locale", list(Locale))
@pytest.mark.parametrize(
    "template",
    [
        EmailTemplate.COLLECTIONS_FINAL_NOTICE,
        EmailTemplate.COLLECTIONS_SUSPENDED,
        EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED,
    ],
)
def test_suspension_emails_state_the_data_deletion_rule(
    renderer: TemplateRenderer, template: EmailTemplate, locale: Locale
) -> None:
    message, email = _render(renderer, template, locale)
    for words in DELETION_WORDS[locale]:
        assert words in email
    assert "合作伙伴中心" not in email and "Partner Center" not in email
    assert message.collections is not None
    if message.collections.data_deletion_at is not None:
        # the day it may happen: never a minute-exact deletion time
        assert day(message.collections.data_deletion_at, locale.value) in email
        assert when(message.collections.data_deletion_at, locale.value) not in email


@pytest.mark.parametrize("locale", list(Locale))
def test_deletion_warning_counts_the_days_left(renderer: TemplateRenderer, locale: Locale) -> None:
    _, email = _render(renderer, EmailTemplate.COLLECTIONS_DELETION_WARNING, locale)
    assert ("约 50 天后" if locale is Locale.ZH_CN else "in 50 days") in email
    assert day(SUSPENDED_AT + timedelta(days=90), locale.value) in email
    assert "（北京时间））" not in email  # no brackets inside brackets
    _, last = _render(
        renderer, EmailTemplate.COLLECTIONS_DELETION_WARNING, locale, extra={"days_left": "1"}
    )
    if locale is Locale.EN_US:
        assert "In 1 day," in last and "1 days" not in last


def test_promise_while_suspended_warns_the_deletion_date_does_not_move(
    renderer: TemplateRenderer,
) -> None:
    promised = make_suspended_collections_view(
        status=CollectionsStatus.PAUSED_PROMISE, promised_until=SUSPENDED_AT + timedelta(days=5)
    )
    for locale, words in ((Locale.ZH_CN, "不会因付款承诺而推迟"), (Locale.EN_US, "does not move")):
        _, email = _render(
            renderer, EmailTemplate.COLLECTIONS_PROMISE_ACCEPTED, locale, collections=promised
        )
        assert words in email
        assert day(SUSPENDED_AT + timedelta(days=90), locale.value) in email
    _, before = _render(renderer, EmailTemplate.COLLECTIONS_PROMISE_ACCEPTED, Locale.EN_US)
    assert "no subscription will be suspended in the meantime" in before


def test_reactivation_says_only_what_its_data_says(renderer: TemplateRenderer) -> None:
    """The letter's lists are the account's (what Partner Center reactivated, what is still
    suspended, what a follow-up letter will confirm), never the invoice's holds."""
    held = collections_for(
        EmailTemplate.COLLECTIONS_REACTIVATED,
        suspended_subscriptions=[SUBSCRIPTION_ID, SECOND_SUBSCRIPTION_ID],
    )
    both = sample_extra(EmailTemplate.COLLECTIONS_REACTIVATED)
    for locale, pending in ((Locale.ZH_CN, "仍在恢复中"), (Locale.EN_US, "still reactivating")):
        _, email = _render(
            renderer, EmailTemplate.COLLECTIONS_REACTIVATED, locale, both, collections=held
        )
        assert pending not in email and email.count(SECOND_SUBSCRIPTION_ID) == 2
        partly = {
            **both,
            "reactivated": [SUBSCRIPTION_ID],
            "reactivating": [SECOND_SUBSCRIPTION_ID],
        }
        _, email = _render(renderer, EmailTemplate.COLLECTIONS_REACTIVATED, locale, partly)
        assert pending in email


@pytest.mark.parametrize(
    ("action", "zh", "en"),
    [
        ("suspend", "暂停失败", "suspension of subscription"),
        ("reactivate", "恢复失败", "reactivation of subscription"),
    ],
)
def test_partner_center_error_says_what_failed(
    renderer: TemplateRenderer, action: str, zh: str, en: str
) -> None:
    extra = {**sample_extra(EmailTemplate.MANAGER_PARTNER_CENTER_ERROR), "action": action}
    for locale, words in ((Locale.ZH_CN, zh), (Locale.EN_US, en)):
        _, email = _render(
            renderer, EmailTemplate.MANAGER_PARTNER_CENTER_ERROR, locale, extra=extra
        )
        assert words in email
        assert extra["subscription_id"] in email and "412 Precondition Failed" in email


def test_closed_invoice_says_why_nothing_is_owed(renderer: TemplateRenderer) -> None:
    waived = collections_for(EmailTemplate.COLLECTIONS_CLOSED, status=CollectionsStatus.WAIVED)
    for locale, credited, waived_words in (
        (Locale.ZH_CN, "已通过贷项通知单抵扣", "我们已免除该账单的未付余额"),
        (Locale.EN_US, "settled by a credit note", "We have waived the outstanding balance"),
    ):
        _, email = _render(renderer, EmailTemplate.COLLECTIONS_CLOSED, locale)
        assert credited in email
        _, other = _render(renderer, EmailTemplate.COLLECTIONS_CLOSED, locale, collections=waived)
        assert waived_words in other


def test_payment_after_fraud_does_not_promise_reactivation(renderer: TemplateRenderer) -> None:
    fraud = collections_for(EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED)
    paid = fraud.model_copy(update={"paid": fraud.amount_due, "balance": Decimal("0.00")})
    for locale, words in (
        (Locale.ZH_CN, "核查期间仍将保持暂停"),
        (Locale.EN_US, "while we review"),
    ):
        extra = {"amount": "48760.00", "still_suspended": [SUBSCRIPTION_ID]}
        _, email = _render(
            renderer, EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED, locale, extra, collections=paid
        )
        assert words in email and SUBSCRIPTION_ID in email
        assert "正在恢复" not in email and "We are reactivating" not in email


@pytest.mark.parametrize(
    "template",
    [EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED, EmailTemplate.COLLECTIONS_REACTIVATED],
)
@pytest.mark.parametrize("locale", [Locale.ZH_CN, Locale.EN_US])
def test_every_payment_letter_says_what_was_applied_and_what_is_kept(
    renderer: TemplateRenderer, template: EmailTemplate, locale: Locale
) -> None:
    """Issue 23: an overpayment is never silent, whichever letter the payment brings (a paid
    invoice that had suspended subscriptions gets the reactivation letter)."""
    message = make_email_message(template)
    assert message.collections is not None
    kept = Overpayment(
        payment_id="P-1",
        received=Decimal("99999999.00"),
        applied=Decimal("48760.00"),
        credit=Decimal("99951239.00"),
    )
    view = message.collections.model_copy(update={"overpayment": kept, "balance": Decimal(0)})
    rendered = renderer.render_message(
        message.model_copy(update={"locale": locale, "collections": view})
    )
    for part in (rendered.text, rendered.html):
        assert "48,760.00" in part and "99,951,239.00" in part, part


LABELLED = {
    "category": {c.value for c in Category},
    "priority": {p.value for p in Priority},
    "status": {s.value for s in CaseStatus},
    "outcome": {o.value for o in Outcome},
    "severity": {s.value for s in Severity},
    "collections_status": {s.value for s in CollectionsStatus},
    "vianet_status": {s.value for s in VianetInvoiceStatus},
}


@pytest.mark.parametrize("locale", list(Locale))
def test_every_enum_value_has_its_words_in_every_locale(
    renderer: TemplateRenderer, locale: Locale
) -> None:
    """A status added to a model and not to the letters' words fails every email about such a
    case (CI found a merged case's staff email refused this way)."""
    labels = renderer.env.get_template(f"email/{locale.value}/_labels.txt").make_module(
        {"case": None, "collections": None, "vianet_invoice": None, "locale": locale.value}
    )
    for name, values in LABELLED.items():
        assert set(getattr(labels, name)) == values, name
    customer_letters = {t.value for t in EmailTemplate if t.to_customer}
    named = set(getattr(labels, "email_name"))  # noqa: B009 -- a template's variable
    assert customer_letters <= named, customer_letters - named


@pytest.mark.parametrize("status", list(CaseStatus))
@pytest.mark.parametrize("locale", list(Locale))
def test_a_staff_email_renders_for_a_case_in_any_status(
    renderer: TemplateRenderer, status: CaseStatus, locale: Locale
) -> None:
    message = make_email_message(
        EmailTemplate.MANAGER_NEEDS_ATTENTION,
        locale=locale,
        case=case_for(EmailTemplate.MANAGER_NEEDS_ATTENTION, status=status),
    )
    email = renderer.render_message(message)
    assert message.subject_id in email.text


STAFF_EMAILS = [t for t in EmailTemplate if not t.to_customer]


@pytest.mark.parametrize("locale", list(Locale))
@pytest.mark.parametrize("template", STAFF_EMAILS)
def test_every_staff_email_links_the_page_where_its_reader_acts(
    renderer: TemplateRenderer, template: EmailTemplate, locale: Locale
) -> None:
    message = make_email_message(template, locale=locale)
    page = links(message, "https://billing.partner.cn")
    email = renderer.render_message(message, page)
    assert email.text.count(page["page"]) == 1, email.text
    assert f'href="{page["page"]}"' in email.html
    bare = renderer.render_message(message)  # no workspace address set: no link
    assert "https://" not in bare.text


@pytest.mark.parametrize("locale", list(Locale))
def test_an_invoice_s_last_step_is_named_in_words_not_its_id(
    renderer: TemplateRenderer, locale: Locale
) -> None:
    """The shipped policy's steps and the waits are named in the reader's words; a partner's own
    step name shows as written (as the workspace does)."""
    message = make_email_message(EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF, locale=locale)
    text = renderer.render_message(message).text
    assert "hand-off" not in text
    assert ("移交经理" if locale is Locale.ZH_CN else "handed to a manager") in text
