"""What a customer reads: only their language, never an internal note, a fraud signal, a waiver's
reason or the billing system's words, whatever the workflows were given (English, hostile text,
the payloads of emails scheduled before these fields were retired)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from activities.rendering import TemplateRenderer
from core.models import (
    DEMO_LETTERHEAD,
    CaseView,
    CollectionsStatus,
    EmailMessage,
    EmailTemplate,
    EventKind,
    Letterhead,
    Locale,
    PaymentFailure,
    payment_failure,
)
from core.settings import Settings
from tests.factories import collections_for, make_email_message
from tests.hostile import ODD_TEXTS

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CUSTOMER_TEMPLATES = [t for t in EmailTemplate if t.to_customer]
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")
# what a Chinese letter may still write in Latin letters besides its ids: amounts' currency
# signs and codes (CN¥, US$, USD 5.00), the product, email addresses
ALLOWED = re.compile(
    r"\b[A-Z]{2}[¥$]|\b[A-Z]{3}(?=\s?\d)|\bAzure\b|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\.(?:pdf|png|jpg|xlsx)\b",  # an attached file's name (an agent's reply lists it)
)
# what a person wrote to the customer, or the customer wrote: quoted as written, in any language
PERSONS_WORDS = re.compile(
    r"(^|\.)(customer\.name|description|resolution\.summary)$"
    r"|^extra\.(question|reason|text|subject)$"
)
ID_FIELD = re.compile(r"(_id|_ids|_number|ticket_number)(\[\d+\])?$")


def _english(index: int) -> str:
    return f"Internal note {index}: card declined by issuer, waived per manager, fraud signal"


def _hostile(index: int) -> str:
    # always some Latin too, so that a leak of any of them shows
    return f"{ODD_TEXTS[index % len(ODD_TEXTS)]} internal note {index}"


class Swapped:
    """A message whose free text (every Chinese string of the sample) is replaced by
    ``text(index)``: which values a person wrote, which are internal, which are ids."""

    def __init__(self, message: EmailMessage, text: Callable[[int], str]) -> None:
        self.text = text
        self.persons: list[str] = []
        self.internal: list[str] = []
        self.ids: set[str] = set()
        views = {
            name: self._swap(getattr(message, name), name)
            for name in ("case", "collections", "account")
            if getattr(message, name) is not None
        }
        data = message.data.model_dump(mode="json")
        # an id the letter names beside its view's (the invoice a credit was applied to)
        self.ids.update(v for k, v in data.items() if k.endswith("_id") and isinstance(v, str))
        for name, value in list(data.items()):
            if isinstance(value, str) and ID_FIELD.search(name):
                self.ids.add(value)  # e.g. the case a duplicate merged into
            elif isinstance(value, str) and CJK.search(value):
                data[name] = self._value(f"extra.{name}")
        # what an older workflow still passes: the retired free text, never shown
        for name in type(message.data).retired:
            data[name] = self._value(f"retired.{name}")
        self.message = message.model_copy(
            update={**views, "data": type(message.data).model_validate(data)}
        )

    def _value(self, path: str) -> str:
        value = self.text(len(self.persons) + len(self.internal))
        (self.persons if PERSONS_WORDS.search(path) else self.internal).append(value)
        return value

    def _swap(self, value: Any, path: str) -> Any:
        if isinstance(value, BaseModel):
            update = {
                name: self._swap(getattr(value, name), f"{path}.{name}")
                for name in type(value).model_fields
            }
            if isinstance(value, CaseView):
                # the question asked is the agent's words to the customer (the reminder quotes it)
                update["timeline"] = [
                    event.model_copy(update={"text": self._asked(event.text)})
                    if event.kind is EventKind.INFO_REQUESTED
                    else event
                    for event in update["timeline"]
                ]
            return value.model_copy(update=update)
        if isinstance(value, list):
            return [self._swap(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if type(value) is str:
            if ID_FIELD.search(path):
                self.ids.add(value)
            if CJK.search(value):
                return self._value(path)
        return value

    def _asked(self, swapped: str) -> str:
        if swapped in self.internal:
            self.internal.remove(swapped)
            self.persons.append(swapped)
        return swapped


def _readable(part: str, is_html: bool) -> str:
    if is_html:
        part = html.unescape(re.sub(r"<[^>]*>", " ", part))
    return part


def _without(text: str, values: list[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        for line in value.splitlines() or [value]:
            if line.strip():
                text = text.replace(line.strip(), " ")
    return text


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(TEMPLATES)


@pytest.mark.parametrize("inputs", [_english, _hostile], ids=["english", "hostile"])
@pytest.mark.parametrize("template", CUSTOMER_TEMPLATES)
def test_a_chinese_letter_has_no_latin_word_but_ids_amounts_products_and_addresses(
    renderer: TemplateRenderer, template: EmailTemplate, inputs: Callable[[int], str]
) -> None:
    swapped = Swapped(make_email_message(template, locale=Locale.ZH_CN), inputs)
    assert swapped.internal or swapped.persons  # the sample had Chinese free text to replace
    email = renderer.render_message(swapped.message)
    for part, is_html in ((email.subject, False), (email.text, False), (email.html, True)):
        readable = _readable(part, is_html)
        for value in swapped.internal:
            assert value.strip() not in readable, f"internal text reached the customer: {value!r}"
        left = _without(readable, swapped.persons + sorted(swapped.ids))
        left = ALLOWED.sub(" ", left)
        words = [
            (m.group(), left[max(0, m.start() - 30) : m.end() + 30])
            for m in LATIN_WORD.finditer(left)
        ]
        assert not words, f"{template.value}: Latin words in a zh-CN letter: {words}"


@pytest.mark.parametrize("inputs", [_english, _hostile], ids=["english", "hostile"])
@pytest.mark.parametrize("template", CUSTOMER_TEMPLATES)
def test_an_english_letter_has_no_internal_text_either(
    renderer: TemplateRenderer, template: EmailTemplate, inputs: Callable[[int], str]
) -> None:
    swapped = Swapped(make_email_message(template, locale=Locale.EN_US), inputs)
    email = renderer.render_message(swapped.message)
    for part, is_html in ((email.subject, False), (email.text, False), (email.html, True)):
        readable = _readable(part, is_html)
        for value in swapped.internal:
            assert value.strip() not in readable, f"internal text reached the customer: {value!r}"


def test_the_latin_check_finds_a_leak(renderer: TemplateRenderer) -> None:
    """The check above would fail on the letters as they were: an internal reason quoted."""
    message = make_email_message(EmailTemplate.COLLECTIONS_CLOSED)
    email = renderer.render_message(message)
    leaked = email.text.replace("我们已停止", f"{_english(0)}我们已停止")
    assert LATIN_WORD.search(ALLOWED.sub(" ", _without(leaked, [message.collections.invoice_id])))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("card declined", PaymentFailure.CARD_DECLINED),
        ("Do Not Honor (05)", PaymentFailure.CARD_DECLINED),
        ("Insufficient funds", PaymentFailure.INSUFFICIENT_FUNDS),
        ("卡片余额不足（银行返回代码 51）", PaymentFailure.INSUFFICIENT_FUNDS),
        ("expired card: declined", PaymentFailure.CARD_EXPIRED),
        ("bank transfer not received by due date", PaymentFailure.TRANSFER_NOT_RECEIVED),
        ("款项未到账", PaymentFailure.TRANSFER_NOT_RECEIVED),
        ("account frozen by court order", PaymentFailure.ACCOUNT_FROZEN),
        ("账户已冻结", PaymentFailure.ACCOUNT_FROZEN),
        ("exceeds daily limit", PaymentFailure.LIMIT_EXCEEDED),
        ("invalid account number", PaymentFailure.INVALID_ACCOUNT),
        ("direct debit mandate revoked", PaymentFailure.AUTHORIZATION_REVOKED),
        ("gateway timeout", PaymentFailure.BANK_UNAVAILABLE),
        ("ERR_7731", PaymentFailure.UNKNOWN),
        ("", PaymentFailure.UNKNOWN),
        ("<script>alert(1)</script>", PaymentFailure.UNKNOWN),
    ],
)
def test_a_billing_system_reason_becomes_a_code(reason: str, code: PaymentFailure) -> None:
    assert payment_failure(reason) is code


@pytest.mark.parametrize("locale", list(Locale))
def test_every_failure_code_has_its_sentence_and_an_unknown_one_is_neutral(
    renderer: TemplateRenderer, locale: Locale
) -> None:
    sentences = set()
    for code in PaymentFailure:
        message = make_email_message(
            EmailTemplate.COLLECTIONS_PAYMENT_FAILED, locale=locale, extra={"failure": code}
        )
        email = renderer.render_message(message)
        assert code.value not in email.text and code.value not in email.html
        sentences.add(email.text)
    assert len(sentences) == len(PaymentFailure)  # each code says something of its own
    # a code the templates do not know (a newer worker's) reads as the neutral sentence
    message = make_email_message(EmailTemplate.COLLECTIONS_PAYMENT_FAILED, locale=locale)
    unknown_code = renderer.render(
        EmailTemplate.COLLECTIONS_PAYMENT_FAILED,
        locale,
        {"collections": message.collections, "extra": {"failure": "chargeback-in-review"}},
    )
    unknown = renderer.render_message(
        make_email_message(
            EmailTemplate.COLLECTIONS_PAYMENT_FAILED, locale=locale, extra={"failure": "unknown"}
        )
    )
    assert "chargeback" not in unknown_code.text and unknown_code.text == unknown.text


@pytest.mark.parametrize(
    ("template", "old", "now"),
    [
        (EmailTemplate.COLLECTIONS_PAYMENT_FAILED, "card declined", {"failure": "card-declined"}),
        (
            EmailTemplate.COLLECTIONS_PAYMENT_FAILED,
            "ERR_7731 processor said no",
            {"failure": "unknown"},
        ),
        (EmailTemplate.COLLECTIONS_CLOSED, "waived: CFO said this customer is strategic", {}),
        (EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED, "37 GPU VMs in 48h; card reported stolen", {}),
        (EmailTemplate.CASE_WITHDRAWN, "duplicate, customer is annoying", {}),
    ],
)
@pytest.mark.parametrize("shape", ["data", "extra"])
def test_an_email_scheduled_with_the_old_free_text_still_sends_without_it(
    renderer: TemplateRenderer, template: EmailTemplate, old: str, now: dict[str, str], shape: str
) -> None:
    """Running workflows scheduled these emails with ``reason``: read as a code, or dropped."""
    typed = make_email_message(template)
    payload = typed.model_dump(mode="json", exclude={"data"})
    if shape == "data":
        payload["data"] = {"template": template.value, "reason": old}
    else:  # older still: before the data was typed
        payload.update(template=template.value, extra={"reason": old})
    message = EmailMessage.model_validate(payload)
    assert message.data.model_dump(mode="json", exclude={"template", "also"}) == now
    for locale in Locale:
        email = renderer.render_message(message.model_copy(update={"locale": locale}))
        assert old not in email.text and old not in email.html
    chinese = renderer.render_message(message)
    assert not LATIN_WORD.search(_without(chinese.text, [*_ids(message), "Azure"]))


def _ids(message: EmailMessage) -> list[str]:
    return sorted(Swapped(message, _english).ids)


def test_a_closed_letter_says_why_from_the_status_alone(renderer: TemplateRenderer) -> None:
    for status, zh in (
        (CollectionsStatus.CREDITED, "贷项通知单抵扣"),
        (CollectionsStatus.WAIVED, "我们已免除"),
    ):
        view = collections_for(EmailTemplate.COLLECTIONS_CLOSED, status=status)
        message = make_email_message(EmailTemplate.COLLECTIONS_CLOSED, collections=view)
        assert zh in renderer.render_message(message).text


def test_letters_sign_with_the_partner_and_say_where_to_pay() -> None:
    letterhead = Letterhead(
        partner_name="北京示例伙伴科技有限公司",
        partner_name_en="Beijing Example Partner Ltd.",
        phone="010-5555-0100",
        hours="08:30–17:30",
        bank_account_name="北京示例伙伴科技有限公司",
        bank_name="中国工商银行北京海淀支行",
        bank_account_number="0200 0045 0920 0012 345",
    )
    renderer = TemplateRenderer(TEMPLATES, letterhead)
    unpaid = make_email_message(EmailTemplate.COLLECTIONS_REMINDER)
    invoice = unpaid.collections.invoice_id  # type: ignore[union-attr]
    zh = renderer.render_message(unpaid)
    en = renderer.render_message(unpaid.model_copy(update={"locale": Locale.EN_US}))
    for email in (zh, en):
        for part in (email.text, email.html):
            for value in (letterhead.phone, letterhead.hours, letterhead.bank_name):
                assert value in part
            assert letterhead.bank_account_number in part and invoice in part
    for label in ("户名：", "开户行：", "账号：", "转账附言：", "客服电话："):
        assert label in zh.text
    assert "北京示例伙伴科技有限公司\n账单支持团队" in zh.text
    assert letterhead.partner_name_en in en.text
    assert zh.subject.startswith(f"【账单 {invoice}】")
    # nothing to pay: no bank details; a case letter neither
    closed = renderer.render_message(make_email_message(EmailTemplate.COLLECTIONS_CLOSED))
    case = renderer.render_message(make_email_message(EmailTemplate.CASE_ACKNOWLEDGED))
    for email in (closed, case):
        assert letterhead.bank_account_number not in email.text
        assert letterhead.phone in email.text
    assert case.subject.startswith("【工单 ") and "工单编号：" in case.text


def test_the_letterhead_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).letterhead() == DEMO_LETTERHEAD
    monkeypatch.setenv("PARTNER_PHONE", "021-6000-0000")
    monkeypatch.setenv("BANK_ACCOUNT_NUMBER", "6222 0000 1111")
    settings = Settings(_env_file=None)
    assert settings.letterhead().phone == "021-6000-0000"
    assert settings.letterhead().bank_account_number == "6222 0000 1111"


@pytest.mark.parametrize("locale", list(Locale))
@pytest.mark.parametrize("template", CUSTOMER_TEMPLATES)
def test_subjects_name_days_and_no_bracket_nests_in_another(
    renderer: TemplateRenderer, template: EmailTemplate, locale: Locale
) -> None:
    email = renderer.render_message(make_email_message(template, locale=locale))
    assert not re.search(r"\d:\d\d", email.subject), email.subject
    for part in (email.subject, email.text):
        assert not re.search(r"（[^（）]*（", part)
    if locale is Locale.ZH_CN:
        assert re.match(r"【(工单|账单|账户) [^】]+】", email.subject)
        assert "案例" not in email.text and "发票号" not in email.text
