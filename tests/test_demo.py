"""`make demo`: the demo's collections policy (a day that lasts a minute, the default's steps), the
head start its older invoices get, and its seeding on the real worker and dev server, then the tour
walked in Chromium in zh-CN: the agent's inbox, composer and a customer page, the manager approving
a suspension, finance recording the payment that reactivates a suspended subscription.

WORKSPACE_SCREENSHOTS=docs writes the README's pictures of the demo there (demo-*.png)."""

from __future__ import annotations

import os
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect
from temporalio.testing import WorkflowEnvironment

from core.models import CollectionsStatus, StepAnchor
from core.settings import (
    ROOT,
    EmailBackend,
    Settings,
    SettingsError,
    load_collections_policy,
    load_settings,
)
from demo.seed import (
    AGENT,
    APPROVE_NOW,
    CASES,
    CUSTOMERS,
    FINANCE,
    INVOICES,
    MANAGER,
    PASSWORD,
    PAY_TO_REACTIVATE,
    STAFF,
    DemoError,
    Seeded,
    head_start,
    seed,
)
from service import Service
from tests.clock_support import eventually
from tests.test_attachment_downloads import INBOUND
from tests.test_temporal_ui import CHROMIUM, WAIT_MS
from tests.test_workspace_browser import Served, serving, sign_in
from tests.workspace_support import Stack, workspace_settings
from web.app import create_app
from worker import build_worker
from workflows.collections.clock import PolicyClock

sys.path.insert(0, str(ROOT / "scripts"))
import dev  # scripts/ is a plain folder, not a package

DEMO_POLICY = ROOT / "config" / "collections_policy.demo.toml"
DEFAULT_POLICY = ROOT / "config" / "collections_policy.toml"
T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def test_the_demo_policy_is_the_default_with_a_day_of_a_minute() -> None:
    demo, default = load_collections_policy(DEMO_POLICY), load_collections_policy(DEFAULT_POLICY)
    assert demo.day_length == timedelta(minutes=1) and default.day_length == timedelta(days=1)
    fields = ("name", "day", "after", "email", "action", "approval")
    assert [s.model_dump(include=set(fields)) for s in demo.steps] == [
        s.model_dump(include=set(fields)) for s in default.steps
    ]
    # its other durations are the default's, counted in the same short days
    assert demo.data_deletion_after / demo.day_length == 90
    assert demo.close_after_hand_off / demo.day_length == 30
    clock = PolicyClock(demo, T0, timedelta(0), None, timedelta(0), {})
    assert [clock.due(s) for s in demo.steps[:4]] == [
        T0 + timedelta(minutes=day) for day in (0, 3, 7, 10)
    ]
    suspended = PolicyClock(demo, T0, timedelta(0), T0 + timedelta(minutes=12), timedelta(0), {})
    assert suspended.due(demo.steps[4]) == T0 + timedelta(minutes=52)


def test_a_day_shorter_than_a_day_needs_the_calendar_off() -> None:
    with pytest.raises(SettingsError, match="BUSINESS_CALENDAR=false"):
        Settings(collections_policy_file=DEMO_POLICY, business_calendar=True).collections_policy()
    policy = Settings(collections_policy_file=DEMO_POLICY, business_calendar=False)
    assert policy.collections_policy().calendar is None


def test_make_demo_runs_the_demo_policy_on_its_own_files_and_its_own_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in dev.DEMO_ENV.items():  # what `make demo` puts in its children's environment
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.collections_policy().day_length == timedelta(minutes=1)
    assert settings.email_backend is EmailBackend.OUTBOX
    assert settings.partner_center_backend == "dry-run" and settings.robots() == []
    assert dev.DEMO_DIR in settings.outbox_dir.parents and "var/demo/" in settings.database_url
    with (
        socket.socket() as taken
    ):  # a `make run` already serving: the demo says so, touches nothing
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(dev, "PORT", taken.getsockname()[1])
        monkeypatch.setattr(dev, "DEMO_DIR", ROOT / "var" / "demo-never-made")
        with pytest.raises(dev.DevError, match="is taken"):
            dev.start_demo()
    assert not (ROOT / "var" / "demo-never-made").exists()


def test_a_head_start_moves_the_steps_due_by_then_to_day_zero() -> None:
    policy = load_collections_policy(DEMO_POLICY)
    started = head_start(policy, 50)  # 40 days after the suspension on day 10
    days = {s.name: (s.day, s.after) for s in started.steps}
    assert days == {
        "payment-failed": (0, StepAnchor.FAILURE),
        "reminder": (0, StepAnchor.FAILURE),
        "final-notice": (0, StepAnchor.FAILURE),
        "suspension": (0, StepAnchor.FAILURE),
        "deletion-warning": (0, StepAnchor.SUSPENSION),
        "last-deletion-warning": (40, StepAnchor.SUSPENSION),
        "hand-off": (45, StepAnchor.SUSPENSION),
    }
    assert started.data_deletion_after == timedelta(minutes=50)
    assert head_start(policy, 0) == policy
    assert [s.day for s in head_start(policy, 3).steps][:4] == [0, 0, 4, 7]


@dataclass
class Demo:
    stack: Stack
    seeded: Seeded


@pytest_asyncio.fixture(scope="module")
async def demo(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Demo]:
    """The demo seeded as `make demo` seeds it: the demo's settings, the real worker."""
    folder = tmp_path_factory.mktemp("demo")
    settings = workspace_settings(
        folder,
        collections_policy_file=DEMO_POLICY,
        business_calendar=False,
        attachments_dir=folder / "attachments",
        **INBOUND,
    )
    service = Service(dev_env.client, settings)

    async def factory() -> Service:
        return service

    async with build_worker(dev_env.client, settings):
        seeded = await seed(service)
        yield Demo(Stack(settings, service, create_app(settings, factory)), seeded)


async def test_the_seeded_partner_has_cases_in_every_state_and_invoices_at_every_stage(
    demo: Demo,
) -> None:
    service, seeded = demo.stack.service, demo.seeded
    assert seeded.customers == len(CUSTOMERS) == 12
    assert seeded.cases == Counter(
        {
            "open": 1,
            "waiting-on-customer": 2,
            "escalation-pending": 1,
            "waiting-on-21vianet": 1,
            "resolved": 1,
            "closed": 1,
            "withdrawn": 1,
        }
    ) + Counter({"open": 1})
    assert seeded.invoices == Counter(invoice.stage for invoice in INVOICES)
    assert {"awaiting-approval", "suspension", "handed-off", "paid", "waived"} <= set(
        seeded.invoices
    )
    # what the workflows show is what the database keeps for the workspace's lists
    for invoice in INVOICES:
        view = await service.collections.show(invoice.invoice_id)
        assert view.stage == invoice.stage, invoice.invoice_id
    suspended = await service.collections.show(PAY_TO_REACTIVATE)
    assert suspended.suspended_subscriptions == [CUSTOMERS[4].subscription_id]
    disputed = await service.collections.show("G202611110")
    assert disputed.status is CollectionsStatus.PAUSED_DISPUTE and disputed.linked_case_id
    for case_id, case in zip(seeded.case_ids, CASES, strict=True):
        opened = await service.cases.show(case_id)
        assert opened.details.customer.name == case.customer.name
    assert {a.person.email for a in await service.users.accounts()} == set(STAFF)
    assert await service.inbox.waiting() == seeded.inbox == 2
    assert len(await service.macros.all()) == seeded.macros == 3
    with pytest.raises(DemoError, match="fresh one"):  # seeded once: again is refused
        await seed(service)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
async def test_the_tour_in_the_browser(demo: Demo, tmp_path: Path) -> None:
    shots = Path(os.environ.get("WORKSPACE_SCREENSHOTS") or tmp_path)
    async with serving(demo.stack) as served:
        await _agent(served, demo.seeded, shots)
        await _manager_approves(served, shots)
        await _finance_pays(served)


async def _agent(served: Served, seeded: Seeded, shots: Path) -> None:
    """The agent's inbox, a case's composer with a canned reply, and a customer's page."""
    page = await sign_in(served, AGENT, PASSWORD)
    try:
        await page.get_by_role("link", name="收件箱").click()
        await expect(page.get_by_test_id("letter")).to_have_count(2, timeout=WAIT_MS)
        await expect(page.get_by_test_id("letter").first).to_contain_text("开票信息变更")
        await page.screenshot(path=shots / "demo-inbox.png", full_page=True)

        await page.goto(f"{served.url}/cases/{seeded.case_ids[1]}")
        composer = page.get_by_test_id("composer")
        async with page.expect_navigation(timeout=WAIT_MS):  # the picker sends itself
            await composer.locator('select[name="macro"]').select_option(
                label="已收到，正在核对 · 简体中文"
            )
        text = await composer.locator('textarea[name="text"]').input_value()
        assert text.startswith(CUSTOMERS[1].name) and "¥3,280.00" in text and "王客服" in text
        await composer.screenshot(path=shots / "demo-composer.png")

        await page.goto(f"{served.url}/customers/{CUSTOMERS[4].tenant_id}")
        await expect(page.get_by_test_id("account-holds")).to_contain_text(PAY_TO_REACTIVATE)
        await expect(page.get_by_test_id("customer-cases")).to_contain_text("等待世纪互联")
        await page.screenshot(path=shots / "demo-customer.png", full_page=True)
    finally:
        await page.context.close()


async def _manager_approves(served: Served, shots: Path) -> None:
    service = served.stack.service
    page = await sign_in(served, MANAGER, PASSWORD)
    try:
        await page.get_by_role("link", name="催收", exact=True).click()
        await expect(page.locator("table")).to_contain_text("G202611107", timeout=WAIT_MS)
        await page.screenshot(path=shots / "demo-collections.png", full_page=True)
        await page.goto(f"{served.url}/collections/{APPROVE_NOW}")
        form = page.locator('details[data-action="approve-suspension"]')
        await form.locator("summary").click()
        await form.locator('[name="reason"]').fill("多次催缴未付，批准暂停。")
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await form.locator("button[type=submit]").click()

        async def suspended() -> bool:
            return bool((await service.collections.show(APPROVE_NOW)).suspended_subscriptions)

        await eventually(suspended, f"{APPROVE_NOW} suspended", seconds=WAIT_MS / 1000)
    finally:
        await page.context.close()


async def _finance_pays(served: Served) -> None:
    service = served.stack.service
    page = await sign_in(served, FINANCE, PASSWORD)
    try:
        await page.goto(f"{served.url}/collections/{PAY_TO_REACTIVATE}")
        form = page.locator('details[data-action="payment"]')
        await form.locator("summary").click()
        await form.locator('[name="payment_id"]').fill("CMB-20261124-0001")
        await form.locator('[name="amount"]').fill("36150.80")
        async with page.expect_navigation(timeout=WAIT_MS * 2):
            await form.locator("button[type=submit]").click()
        await expect(page.get_by_test_id("status")).to_have_text("已付", timeout=WAIT_MS)

        async def reactivated() -> bool:
            view = await service.collections.show(PAY_TO_REACTIVATE)
            return view.status is CollectionsStatus.PAID and not view.suspended_subscriptions

        await eventually(reactivated, f"{PAY_TO_REACTIVATE} reactivated", seconds=WAIT_MS / 1000)
    finally:
        await page.context.close()
