"""Collections on the real dev server: a signed webhook reports a billing failure, the workflow
suspends through the real Partner Center client (against the local stand-in, which checks the
etag), a signed payment reactivates."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from chaos.harness import FAST_POLICY
from core import search
from core.ids import account_workflow_id, collections_workflow_id
from core.models import (
    AccountOverrides,
    BillingFailure,
    CollectionsStatus,
    EventKind,
    PaymentReceived,
    PaymentReport,
    SetOverrides,
    Waive,
)
from core.settings import Settings
from db.session import make_engine, make_session_factory, one_off_session
from db.tables import Account, Collections, PartnerCenterAction
from service import Service, Started
from service.collections import Approve
from service.errors import ServiceError
from tests.clock_support import eventually
from tests.codec_support import replay_and_record
from tests.intake_support import SIGNED, post
from tests.partner_center_standin import (
    PartnerCenterStandIn,
    partner_center_settings,
    partner_center_standin_fixture,  # noqa: F401
)
from tests.workflow_support import billing_failure
from tests.workspace_support import AGENT, Stack, signed_in
from worker import build_worker
from workflows.collections import CollectionsWorkflow


@pytest_asyncio.fixture
async def settings(
    dev_env: WorkflowEnvironment, tmp_path: Path, partner_center_standin: PartnerCenterStandIn
) -> AsyncIterator[Settings]:
    settings = partner_center_settings(tmp_path, partner_center_standin, "collections")
    async with build_worker(dev_env.client, settings):
        yield settings


async def test_failure_suspends_and_payment_reactivates(
    dev_env: WorkflowEnvironment, settings: Settings, partner_center_standin: PartnerCenterStandIn
) -> None:
    client = dev_env.client
    failure = billing_failure(amount="8800.00", subscriptions=2)
    tenant = failure.customer.tenant_id
    for subscription_id in failure.subscription_ids:
        partner_center_standin.add_subscription(tenant, subscription_id)

    signed = settings.model_copy(update=SIGNED)
    app = create_app(signed, _factory(client, signed))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as api:
        first = await post(api, "/v1/billing-failures", failure.model_dump(mode="json"))
        assert first.json()["result"] == "started", first.text
        retry = failure.model_copy(update={"failure_id": "retry-1"}).model_dump(mode="json")
        assert (await post(api, "/v1/billing-failures", retry)).json()["result"] == "joined"
        unsigned = await api.post("/v1/payments", json=_payment(failure.invoice_id, "8800.00", "X"))
        assert unsigned.status_code == 401
        await _suspended_then_paid(client, api, failure, partner_center_standin, settings)


async def _suspended_then_paid(
    client: Client,
    api: httpx.AsyncClient,
    failure: BillingFailure,
    partner_center_standin: PartnerCenterStandIn,
    settings: Settings,
) -> None:
    tenant = failure.customer.tenant_id

    def statuses() -> set[str]:
        return {
            partner_center_standin.subscription(tenant, s)["status"]
            for s in failure.subscription_ids
        }

    await eventually(lambda: _now(statuses() == {"suspended"}))
    handle = client.get_workflow_handle_for(
        CollectionsWorkflow.run, collections_workflow_id(failure.invoice_id)
    )

    async def all_suspended() -> bool:
        view = await handle.query(CollectionsWorkflow.view)
        return len(view.suspended_subscriptions) == 2

    await eventually(all_suspended)
    partial = await post(api, "/v1/payments", _payment(failure.invoice_id, "800.00", "PAY-1"))
    assert partial.status_code == 200, partial.text
    assert Decimal(partial.json()["balance"]) == Decimal("8000.00")
    # the same payment id with another amount: refused naming both (the same amount: done)
    other = await post(api, "/v1/payments", _payment(failure.invoice_id, "900.00", "PAY-1"))
    assert other.status_code == 409 and "¥800.00" in other.text and "¥900.00" in other.text
    again = await post(api, "/v1/payments", _payment(failure.invoice_id, "800.00", "PAY-1"))
    assert again.status_code == 200 and Decimal(again.json()["balance"]) == Decimal("8000.00")
    assert statuses() == {"suspended"}
    paid = await post(api, "/v1/payments", _payment(failure.invoice_id, "8000.00", "PAY-2"))
    assert paid.status_code == 200, paid.text
    result = await handle.result()
    assert result.status is CollectionsStatus.PAID
    # the customer's account reactivates: nothing else holds the subscriptions
    await eventually(lambda: _now(statuses() == {"active"}))
    patches = [r for r in partner_center_standin.api_requests if r.method == "PATCH"]
    assert len(patches) == 4 and all(r.status == 200 for r in patches)

    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        row = session.get(Collections, failure.invoice_id)
        assert row is not None and row.status == "paid" and row.balance == Decimal("0.00")
        assert row.paid == Decimal("8800.00") and row.suspended_subscriptions == []
        actions = session.scalars(select(PartnerCenterAction)).all()
        assert sorted(a.status for a in actions) == ["active", "active", "suspended", "suspended"]

    def emails() -> list[str]:
        return sorted(p.name for p in settings.outbox_dir.glob("*.eml"))

    assert any("collections_suspended" in name for name in emails())
    await eventually(lambda: _now(any("collections_reactivated" in n for n in emails())))

    described = await handle.describe()
    assert described.typed_search_attributes.get(search.COLLECTIONS_STAGE) == "paid"
    history = await handle.fetch_history()
    await replay_and_record(client, history, "collections_suspended_paid")
    account = client.get_workflow_handle(account_workflow_id(tenant))
    # a billing run's work waits behind what people do (core/priority.py), the account with it
    for started in (described, await account.describe()):
        assert started.raw_description.workflow_execution_info.priority.priority_key == 4
    await replay_and_record(client, await account.fetch_history(), "account_suspended_paid")


def _payment(invoice_id: str, amount: str, payment_id: str) -> dict[str, str]:
    return PaymentReport(
        payment_id=payment_id,
        invoice_id=invoice_id,
        amount=Decimal(amount),
        received_at=datetime.now(UTC),
    ).model_dump(mode="json")


def _factory(client: Client, settings: Settings) -> Callable[[], Awaitable[Service]]:
    async def factory() -> Service:
        return Service(client, settings)

    return factory


async def _now(value: bool) -> bool:
    return value


async def test_a_manager_approves_and_the_account_holds_what_two_invoices_share(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    partner_center_standin: PartnerCenterStandIn,
    tmp_path: Path,
) -> None:
    """On the real worker and Partner Center client: two invoices of one customer share a
    subscription; each suspension waits for a manager; the shared subscription is suspended
    once, stays suspended while either invoice is unpaid, and is reactivated once."""
    client = dev_env.client
    policy = tmp_path / "approval_policy.toml"
    policy.write_text(
        FAST_POLICY.replace('action = "suspend"', 'action = "suspend"\napproval = "manager"')
    )
    service = Service(client, settings.model_copy(update={"collections_policy_file": policy}))
    a = billing_failure(amount="100.00", subscriptions=2)
    b = billing_failure(amount="200.00").model_copy(
        update={
            "customer": a.customer,
            "subscription_ids": [a.subscription_ids[0], str(uuid.uuid4())],
        }
    )
    tenant, shared = a.customer.tenant_id, a.subscription_ids[0]
    every = sorted({*a.subscription_ids, *b.subscription_ids})
    for subscription_id in every:
        partner_center_standin.add_subscription(tenant, subscription_id)

    def status(subscription_id: str) -> str:
        return str(partner_center_standin.subscription(tenant, subscription_id)["status"])

    def patches(subscription_id: str) -> int:
        return sum(
            1
            for r in partner_center_standin.api_requests
            if r.method == "PATCH" and r.path.endswith(subscription_id)
        )

    for failure in (a, b):
        assert await service.collections.report_failure(failure) is Started.STARTED

    async def asked(failure: BillingFailure) -> bool:
        return (await service.collections.show(failure.invoice_id)).approval_asked_at is not None

    for failure in (a, b):
        await eventually(lambda failure=failure: asked(failure))  # type: ignore[misc]
    assert {status(s) for s in every} == {"active"}  # nothing without a manager
    decision = Approve(reason="多次催缴未果，批准暂停", by="manager.wang@partner.example.cn")
    for failure in (a, b):
        await service.collections.act(failure.invoice_id, decision)
    await eventually(lambda: _now({status(s) for s in every} == {"suspended"}))
    assert patches(shared) == 1

    await service.collections.act(
        a.invoice_id, PaymentReceived.model_validate(_payment(a.invoice_id, "100.00", "PA"))
    )
    await eventually(lambda: _now(status(a.subscription_ids[1]) == "active"))
    assert status(shared) == "suspended"  # invoice B still holds it
    await service.collections.act(
        b.invoice_id, PaymentReceived.model_validate(_payment(b.invoice_id, "200.00", "PB"))
    )
    await eventually(lambda: _now({status(s) for s in every} == {"active"}))
    assert patches(shared) == 2

    async def released() -> bool:  # Partner Center answers before the account hears it
        account = await service.accounts.show(tenant)
        return account.holds == [] and account.suspended_subscriptions == []

    await eventually(released)
    sessions = make_session_factory(make_engine(settings.database_url))

    async def stored_without_holds() -> bool:
        with sessions() as session:
            row = session.get(Account, tenant)
            return row is not None and row.holds == [] and row.suspended_subscriptions == []

    await eventually(stored_without_holds)
    collections = client.get_workflow_handle(collections_workflow_id(a.invoice_id))
    await replay_and_record(client, await collections.fetch_history(), "collections_approved_paid")
    handle = client.get_workflow_handle(account_workflow_id(tenant))
    await replay_and_record(client, await handle.fetch_history(), "account_shared_holds")


async def test_an_exempt_customers_next_invoice_starts_under_their_overrides(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    partner_center_standin: PartnerCenterStandIn,
) -> None:
    """A manager exempts a customer from suspension on their account; the next invoice that
    fails starts with the policy as the override shapes it (a manager takes it over on the
    suspension day), and its timeline says why."""
    client = dev_env.client
    service = Service(client, settings)
    first = billing_failure(amount="100.00")
    tenant = first.customer.tenant_id
    for subscription_id in first.subscription_ids:
        partner_center_standin.add_subscription(tenant, subscription_id)
    await service.collections.report_failure(first)

    async def has_account() -> bool:
        try:
            return bool((await service.accounts.show(tenant)).holds)
        except ServiceError:
            return False

    await eventually(has_account)
    exempt = SetOverrides(
        overrides=AccountOverrides(exempt_from_suspension=True),
        reason="政府客户，合同约定不停服",
        by="manager.wang@partner.example.cn",
    )
    await service.accounts.set_overrides(tenant, exempt)

    def overrides_stored() -> bool:
        with one_off_session(settings.database_url) as session:
            query = select(Account.overrides).where(Account.account_id == tenant)
            return bool((session.scalar(query) or {}).get("exempt_from_suspension"))

    async def stored() -> bool:
        return await asyncio.to_thread(overrides_stored)

    await eventually(stored)
    second = billing_failure(amount="200.00").model_copy(update={"customer": first.customer})
    for subscription_id in second.subscription_ids:
        partner_center_standin.add_subscription(tenant, subscription_id)
    await service.collections.report_failure(second)

    async def handed_off() -> bool:
        view = await service.collections.show(second.invoice_id)
        return view.status is CollectionsStatus.HANDED_OFF

    await eventually(handed_off)
    view = await service.collections.show(second.invoice_id)
    assert view.suspended_subscriptions == [] and view.suspended_at is None
    overridden = [e for e in view.timeline if e.kind is EventKind.POLICY_OVERRIDDEN]
    assert [e.text for e in overridden] == ["customer overrides: exempt from suspension"]
    statuses = {
        partner_center_standin.subscription(tenant, s)["status"] for s in second.subscription_ids
    }
    assert statuses == {"active"}


async def test_the_invoice_page_lists_the_steps_of_the_policy_the_invoice_runs(
    stack: Stack,
) -> None:
    """Issue 23 #4: under a customer's 15 more days of grace the page shows the suspension on
    day 25 (the run's policy), not the default policy's day 10."""
    failure = billing_failure(amount="300.00")
    default, case_policy = stack.service.collections.policies()
    grace = default.for_customer(exempt=False, extra_grace_days=15)
    assert await stack.service.collections.start(failure, (grace, case_policy), "grace +15 days")
    page = await (await signed_in(stack.app, AGENT)).get(f"/collections/{failure.invoice_id}")
    assert page.status_code == 200, page.text
    steps = re.findall(r'<li data-step="(suspension)"[^>]*>[^<]*?(\d+)', page.text)
    assert steps == [("suspension", "25")], steps
    await stack.service.collections.act(failure.invoice_id, Waive(reason="test over", by=AGENT))
