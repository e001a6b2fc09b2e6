"""Opening a case in the workspace (issue 24 item 2), over httpx against the app on the real
worker and Temporal dev server: the API's fields and validation, the customer found among those
the product knows, the signed-in person as the opener, one case however often the form is sent.
(In a real browser: test_people_browser.py.)"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from core.ids import request_case_id, ulid_time
from core.models import CaseRequest, CaseStatus, Category, Priority
from core.settings import Settings
from db.session import shared_sessions
from db.tables import Account, Case, Collections
from service.customers import Customers
from service.errors import NotFound
from tests.people_support import cases_of, known_customer
from tests.workspace_support import AGENT, FINANCE, OTHER_AGENT, Stack, csrf_of, signed_in
from web.routes.new_case import CASE_FIELDS

KEY = re.compile(r'name="request_key" value="([0-9A-Z]{26})"')


def test_the_form_has_every_field_of_the_api_request_and_no_other() -> None:
    assert sorted(f.name for f in CASE_FIELDS) == sorted(CaseRequest.model_fields)


def test_a_request_key_carries_the_moment_it_was_made() -> None:
    from web.forms import new_request_key

    before = datetime.now(UTC) - timedelta(milliseconds=1)
    made = ulid_time(new_request_key())
    assert made is not None and before <= made <= datetime.now(UTC)
    for broken in ("", "x" * 26, "8" + "0" * 25, "0" * 25, "0" * 25 + "U", "7" + "Z" * 25):
        assert ulid_time(broken) is None, broken


async def _form(client: httpx.AsyncClient, query: str = "") -> tuple[str, str, str]:
    """The new-case page: its text, CSRF token and request key."""
    page = await client.get(f"/cases/new{query}")
    assert page.status_code == 200, page.text
    found = KEY.search(page.text)
    assert found, "the form has no request key"
    return page.text, csrf_of(page.text), found.group(1)


def _fields(tenant_id: str, **changes: str) -> dict[str, str]:
    fields = {
        "tenant_id": tenant_id,
        "name": "北京新客户科技有限公司",
        "email": "ap@new-customer.example.cn",
        "locale": "zh-CN",
        "category": Category.UNEXPECTED_CHARGE.value,
        "priority": Priority.HIGH.value,
        "description": "电话：11月账单多出一台虚拟机的费用。",
        "amount": "860.50",
        "currency": "CNY",
    }
    return {**fields, **changes}


async def test_an_agent_opens_a_case_for_a_customer_found_by_name_once(stack: Stack) -> None:
    name = f"杭州查找测试 {uuid.uuid4().hex[:6]}"
    customer = await known_customer(stack, name)
    client = await signed_in(stack.app, AGENT)
    found, _token, _key = await _form(client, f"?find={name[-6:]}")
    assert name in found and customer.email in found
    assert (await _form(client, "?find=nothing-like-it-anywhere"))[0].count(
        "没有匹配的已知客户"
    ) == 1
    by_email = (await _form(client, f"?find={customer.email.upper()}"))[0]
    assert customer.tenant_id in by_email
    filled, token, key = await _form(client, f"?tenant={customer.tenant_id}")
    assert f'value="{customer.tenant_id}"' in filled and f'value="{customer.email}"' in filled
    assert '<option value="en-US" selected' in filled  # the customer's language, as last known
    fields = _fields(customer.tenant_id, name=name, email=customer.email, locale="en-US")
    sent = {**fields, "owner": OTHER_AGENT, "csrf_token": token, "request_key": key}
    first = await client.post("/cases/new", data=sent)
    assert first.status_code == 303, first.text
    case_id = first.headers["location"].removeprefix("/cases/").split("?")[0]
    made = ulid_time(key)
    assert made is not None and case_id == request_case_id(made, AGENT, key)
    again = await client.post("/cases/new", data=sent)  # a double submit: the same case
    assert again.status_code == 303 and again.headers["location"] == first.headers["location"]
    view = await stack.service.cases.show(case_id)
    assert view.opened_by == AGENT and view.owner == OTHER_AGENT
    assert view.status is CaseStatus.OPEN and view.details.customer == customer
    assert view.details.disputed_amount == Decimal("860.50")
    page = await client.get(first.headers["location"])
    assert "工单已创建" in page.text and name in page.text
    other = await signed_in(stack.app, OTHER_AGENT)  # the same key from another person: theirs
    _text, theirs, _ = await _form(other)
    answer = await other.post("/cases/new", data={**sent, "csrf_token": theirs})
    assert answer.status_code == 303 and case_id not in answer.headers["location"]


async def test_bad_fields_are_refused_inline_naming_each_and_nothing_opens(stack: Stack) -> None:
    tenant_id = str(uuid.uuid4())
    client = await signed_in(stack.app, AGENT)  # zh-CN
    _text, token, key = await _form(client)
    bad = _fields(
        "not-a-tenant",
        email="not an address",
        amount="12.345",
        category="lunch",
        owner="agent.wnag@partner.example.cn",
        description="",
    )
    answer = await client.post("/cases/new", data={**bad, "csrf_token": token, "request_key": key})
    assert answer.status_code == 422
    problems = dict(re.findall(r'data-problem="([a-z_]+)">([^<]+)<', answer.text))
    assert set(problems) == {"tenant_id", "email", "amount", "category", "owner", "description"}
    assert problems["tenant_id"].startswith("租户 ID (tenant_id): 必须是租户 ID")
    assert problems["amount"] == "争议金额 (amount): 最多两位小数（到分）"
    assert problems["owner"].startswith("负责人 (owner): 不是工作台在职的客服或经理")
    assert problems["description"] == "描述 (description): 必填"
    assert 'value="not an address"' in answer.text  # what was typed is kept
    assert KEY.search(answer.text).group(1) == key  # type: ignore[union-attr]
    made = ulid_time(key)
    assert made is not None
    with pytest.raises(NotFound):
        await stack.service.cases.show(request_case_id(made, AGENT, key))
    english = await signed_in(stack.app, OTHER_AGENT)  # en-US
    _text, token, key = await _form(english)
    wrong = _fields(tenant_id, amount="lots", currency="yuan")
    answer = await english.post(
        "/cases/new", data={**wrong, "csrf_token": token, "request_key": key}
    )
    problems = dict(re.findall(r'data-problem="([a-z_]+)">([^<]+)<', answer.text))
    assert problems == {
        "amount": "Disputed amount (amount): must be an amount, e.g. 4300.00",
        "currency": "Currency (currency): must be three capital letters, e.g. CNY",
    }
    stale = await english.post("/cases/new", data={**_fields(tenant_id), "csrf_token": token})
    assert stale.status_code == 400 and "too old" in stale.text
    assert cases_of(stack, tenant_id) == []


async def test_only_agents_and_managers_open_cases(stack: Stack) -> None:
    finance = await signed_in(stack.app, FINANCE)
    assert (await finance.get("/cases/new")).status_code == 403
    token = csrf_of((await finance.get("/payables")).text)
    tenant_id = str(uuid.uuid4())
    answer = await finance.post("/cases/new", data={**_fields(tenant_id), "csrf_token": token})
    assert answer.status_code == 403 and cases_of(stack, tenant_id) == []
    agent = await signed_in(stack.app, AGENT)
    _text, _token, key = await _form(agent)
    no_csrf = await agent.post("/cases/new", data={**_fields(tenant_id), "request_key": key})
    assert no_csrf.status_code == 403 and cases_of(stack, tenant_id) == []


async def test_customers_are_found_by_tenant_name_or_email_latest_first(database_url: str) -> None:
    """The lookup's SQL on SQLite and on PostgreSQL: the three tables a customer is known from,
    one answer a tenant (its latest name, email and language)."""
    customers = Customers(Settings(database_url=database_url))
    old, new = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    tenant, other = "3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64", "9a1c0d3e-2b4f-4a6e-8c7d-1e2f3a4b5c6d"

    def who(tenant_id: str, name: str, email: str, locale: str = "zh-CN") -> dict[str, object]:
        return {
            "tenant_id": tenant_id,
            "customer_name": name,
            "customer_email": email,
            "locale": locale,
        }

    with shared_sessions(database_url)() as session:
        session.add(
            Case(
                **who(tenant, "上海云帆（旧名）", "old@yunfan.example.cn"),
                case_id="BC-1",
                workflow_id="case-BC-1",
                status="closed",
                category="billing-question",
                priority="low",
                disputed_amount=Decimal("0.00"),
                currency="CNY",
                description="d",
                opened_at=old,
                updated_at=old,
            )
        )
        session.add(
            Collections(
                **who(tenant, "上海云帆科技有限公司", "ap@yunfan.example.cn", "en-US"),
                invoice_id="G1",
                workflow_id="collections-G1",
                status="active",
                stage="notice",
                currency="CNY",
                amount_due=Decimal("10.00"),
                paid=Decimal("0.00"),
                credited=Decimal("0.00"),
                balance=Decimal("10.00"),
                first_failed_at=new,
                updated_at=new,
            )
        )
        session.add(
            Account(
                **who(other, "Contoso_100% 中国", "billing@contoso.example.cn"),
                account_id=other,
                workflow_id=f"account-{other}",
                updated_at=old,
            )
        )
        session.commit()
    by_name = await customers.find("云帆")
    assert [(c.tenant_id, c.name, c.email, c.locale.value) for c in by_name] == [
        (tenant, "上海云帆科技有限公司", "ap@yunfan.example.cn", "en-US")
    ]
    assert [c.tenant_id for c in await customers.find("OLD@YUNFAN")] == [tenant]
    assert [c.tenant_id for c in await customers.find(other[:8])] == [other]
    assert [c.tenant_id for c in await customers.find("_100%")] == [other]  # no wildcards
    assert await customers.find("%%") == [] and await customers.find("  ") == []
    assert [c.tenant_id for c in await customers.find("example.cn")] == [tenant, other]
    known = await customers.get(tenant.upper())
    assert known is not None and known.name == "上海云帆科技有限公司"
    assert await customers.get(str(uuid.uuid4())) is None
