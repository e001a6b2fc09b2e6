"""What a manager sees in the Temporal UI, read through the client on the real dev server with the
real worker: search attributes kept current, summaries, static and current details, a summary on
every activity and timer, the saved queries of docs/managers.md, and no customer name or email in
any of it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer
from typer.testing import CliRunner

import cli.common
import starter
from core import search
from core.models import (
    Assign,
    CasePolicy,
    Escalate,
    OpenDispute,
    Priority,
    ReportFraud,
    Severity,
    SlaTargets,
    VianetTicket,
    Withdraw,
)
from core.settings import Settings
from service import Service
from tests.clock_support import eventually
from tests.ui_support import current_details, history_summaries
from tests.workflow_support import billing_failure, open_case
from worker import WORKFLOWS
from workflows import sandbox_runner

AGENT = "agent.wang@partner.example.cn"
# what tests.workflow_support puts in every customer: none of it may reach an unencrypted field
CUSTOMER_DATA = (
    "上海示例科技有限公司",
    "finance@customer.example.cn",
    "北京示例贸易有限公司",
    "ap@customer.example.cn",
)


def assert_no_customer_data(*texts: object) -> None:
    for text in texts:
        for secret in CUSTOMER_DATA:
            assert secret not in str(text), f"customer data {secret!r} in {text!r}"


async def assert_private(handle: WorkflowHandle[Any, Any]) -> None:
    """Search attributes are stored unencrypted and summaries show on every list and page: ids,
    states and amounts only."""
    described = await handle.describe()
    assert_no_customer_data(
        described.search_attributes,  # every key, ours and Temporal's, as the server holds them
        await described.static_summary(),
        await described.static_details(),
    )


async def shows(handle: WorkflowHandle[Any, Any], key: Any, value: object) -> None:
    """A workflow writes its search attributes when it next waits (visibility is eventually
    consistent anyway): the value shows soon after the action, not with its answer."""

    async def shown() -> bool:
        return (await handle.describe()).typed_search_attributes.get(key) == value

    await eventually(shown, f"{key.name} = {value!r}")


async def replay(client: Client, handle: WorkflowHandle[Any, Any]) -> None:
    """The history so far replays on today's code: the new upserts are deterministic."""
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=client.data_converter, workflow_runner=sandbox_runner()
    )
    await replayer.replay_workflow(await handle.fetch_history())


async def test_case_keeps_its_attributes_summary_and_details_current(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    client = dev_env.client
    data = open_case(priority=Priority.HIGH, amount="12340.00", owner=None)
    tenant = data.details.customer.tenant_id
    await Service(client, running).cases.open(data)
    handle = client.get_workflow_handle(f"case-{data.case_id}")

    described = await handle.describe()
    attrs = described.typed_search_attributes
    assert {key.name: attrs.get(key) for key in search.ALL_KEYS if attrs.get(key) is not None} == {
        "CaseStatus": "open",
        "CaseCategory": "invoice-dispute",
        "CasePriority": "high",
        "AssignedAgent": "unassigned",
        "CustomerTenantId": tenant,
        "InvoiceId": "G000123456",
        "SlaBreached": False,
        "EscalatedToVianet": False,
        "DisputedAmount": 12340.0,
    }
    assert await described.static_summary() == (
        f"Invoice dispute · tenant {tenant} · ¥12,340.00 · high"
    )
    static_details = await described.static_details()
    assert static_details and f"**Case {data.case_id}**" in static_details
    assert "- Invoice: G000123456" in static_details
    details = await current_details(handle)
    assert "**open** · waiting for the agent: first response" in details
    assert "- Owner: unassigned" in details
    assert "- Next deadline: SLA: first response reminder" in details

    async def idle() -> bool:  # acknowledged, notified, saved: the case waits on its first timer
        return bool((await history_summaries(client, handle))["timers"])

    await eventually(idle, "the case waits for its first deadline")
    assert (await history_summaries(client, handle))["timers"] == ["SLA: first response reminder"]

    await Service(client).cases.act(data.case_id, Assign(agent=AGENT, by=AGENT))
    await shows(handle, search.ASSIGNED_AGENT, AGENT)
    assert f"- Owner: {AGENT}" in await current_details(handle)

    await Service(client).cases.act(
        data.case_id, Escalate(reason="Meter error", severity=Severity.B, by=AGENT)
    )
    await shows(handle, search.CASE_STATUS, "escalation-pending")
    await shows(handle, search.ESCALATED_TO_VIANET, True)
    await Service(client).cases.act(
        data.case_id, VianetTicket(ticket_number="VN-2611240001", by=AGENT)
    )
    await shows(handle, search.CASE_STATUS, "waiting-on-21vianet")

    async def vianet_details() -> bool:
        return "21Vianet: response target" in await current_details(handle)

    await eventually(vianet_details, "current details name the 21Vianet deadline")
    details = await current_details(handle)
    assert "waiting for 21Vianet: answer to ticket VN-2611240001" in details
    assert "last severity B, ticket VN-2611240001" in details
    assert "first response met" in details and "resolution paused" in details

    async def waits_on_vianet() -> bool:  # every effect carried out, the 21Vianet clock set
        return (await history_summaries(client, handle))["timers"][-1] == (
            "21Vianet: response target"
        )

    await eventually(waits_on_vianet, "the case waits on 21Vianet")
    summaries = await history_summaries(client, handle)
    assert {
        "Email customer: case acknowledged (zh-CN)",
        "Email owner: new case (zh-CN)",
        "Render 21Vianet request #1 (severity B)",
        "Email owner: file escalation (zh-CN)",
        "Email customer: case escalated (zh-CN)",
    } <= set(summaries["activities"])
    assert any(
        s.startswith("Save case: waiting-on-21vianet, events") for s in summaries["activities"]
    )
    assert "Save 21Vianet escalation #1" in summaries["activities"]
    await assert_private(handle)
    await replay(client, handle)


async def test_collections_and_its_dispute_case_carry_their_own_attributes(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    client = dev_env.client
    failure = billing_failure(amount="23400.00", subscriptions=1)
    tenant = failure.customer.tenant_id
    await Service(client, running).collections.report_failure(failure)
    collections = client.get_workflow_handle(f"collections-{failure.invoice_id}")
    described = await collections.describe()
    attrs = described.typed_search_attributes
    assert attrs.get(search.INVOICE_ID) == failure.invoice_id
    assert attrs.get(search.CUSTOMER_TENANT_ID) == tenant
    assert attrs.get(search.AMOUNT_DUE) == 23400.0
    assert attrs.get(search.SUSPENDED) is False
    assert await described.static_summary() == (
        f"Collections · invoice {failure.invoice_id} · tenant {tenant} · ¥23,400.00"
    )

    view = await Service(client).collections.act(
        failure.invoice_id,
        OpenDispute(
            description="沒有用過這台虛擬機", disputed_amount=Decimal("15000.00"), by=AGENT
        ),
    )
    assert view.linked_case_id
    child = client.get_workflow_handle(f"case-{view.linked_case_id}")

    async def child_started() -> bool:
        try:
            await child.describe()
        except Exception:
            return False
        return True

    await eventually(child_started, "the dispute case starts")
    described = await child.describe()
    attrs = described.typed_search_attributes
    assert attrs.get(search.CASE_CATEGORY) == "invoice-dispute"
    assert attrs.get(search.CASE_PRIORITY) == "high"
    assert attrs.get(search.CUSTOMER_TENANT_ID) == tenant
    assert attrs.get(search.INVOICE_ID) == failure.invoice_id
    assert attrs.get(search.DISPUTED_AMOUNT) == 15000.0
    assert attrs.get(search.ASSIGNED_AGENT) == "unassigned"
    # a dispute's case is people's work: not its invoice's bulk priority (core/priority.py),
    # and on the cases' task queue, not its invoice's (core/settings.py cases_task_queue)
    assert described.raw_description.workflow_execution_info.priority.priority_key == 2
    assert described.task_queue == running.cases_task_queue
    assert (await collections.describe()).task_queue == running.task_queue
    assert await described.static_summary() == (
        f"Invoice dispute · tenant {tenant} · ¥15,000.00 · high"
    )
    assert f"- From collections: collections-{failure.invoice_id}" in (
        await described.static_details() or ""
    )
    await shows(collections, search.COLLECTIONS_STAGE, "paused-dispute")
    assert f"waiting for the dispute case {view.linked_case_id}" in await current_details(
        collections
    )
    # the dispute's case, and the customer's account the invoice's notices went through (its
    # start is in the history once the collections' next task has run: waited for, not raced)
    children = sorted(
        [f"Account of tenant {tenant}", f"Invoice dispute · tenant {tenant} · ¥15,000.00 · high"]
    )

    async def both_children() -> bool:  # in either order: a busy worker may take the dispute's
        # update in the collections' first task, before the account is started
        return sorted((await history_summaries(client, collections))["children"]) == children

    await eventually(both_children, "the account and the dispute case are its children")
    await assert_private(collections)
    await assert_private(child)
    await replay(client, collections)
    await Service(client).cases.act(view.linked_case_id, Withdraw(reason="test over", by=AGENT))


async def test_saved_queries_find_what_the_readme_promises(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    client = dev_env.client
    # escalated, a ticket filed, more than 10,000 in dispute
    escalated = open_case(amount="12340.00")
    await Service(client, running).cases.open(escalated)
    for action in (
        Escalate(reason="Meter", severity=Severity.A, by=AGENT),
        VianetTicket(ticket_number="VN-26112402", by=AGENT),
    ):
        await Service(client).cases.act(escalated.case_id, action)
    # nobody owns it, and its first-response target (one second) passes at once
    second = SlaTargets(first_response=timedelta(seconds=1), resolution=timedelta(hours=1))
    breached = open_case(
        amount="500.00", owner=None, policy=CasePolicy(sla=dict.fromkeys(Priority, second))
    )
    await Service(client, running).cases.open(breached)
    # escalated, and the request never filed: after one reminder the manager is asked to look
    hasty = CasePolicy(ticket_reminder_every=timedelta(seconds=1), ticket_reminders_max=1)
    stalled = open_case(amount="300.00", policy=hasty)
    await Service(client, running).cases.open(stalled)
    await Service(client).cases.act(
        stalled.case_id, Escalate(reason="Meter", severity=Severity.C, by=AGENT)
    )
    # an ordinary case: no saved query finds it
    ordinary = open_case(amount="800.00")
    await Service(client, running).cases.open(ordinary)
    # fraud: suspended at once, 23,400 unpaid
    failure = billing_failure(amount="23400.00", subscriptions=1)
    await Service(client, running).collections.report_failure(failure)
    await Service(client).collections.act(
        failure.invoice_id, ReportFraud(reason="stolen card", by=AGENT)
    )

    expected = {
        "sla-breached": {f"case-{breached.case_id}"},
        "waiting-on-21vianet": {f"case-{escalated.case_id}"},
        "escalated": {f"case-{escalated.case_id}", f"case-{stalled.case_id}"},
        "needs-attention": {f"case-{stalled.case_id}"},
        "unassigned": {f"case-{breached.case_id}"},
        "suspended": {f"collections-{failure.invoice_id}"},
        "disputed-over-10k": {f"case-{escalated.case_id}"},
        "unpaid-over-10k": {f"collections-{failure.invoice_id}"},
    }
    assert set(expected) == set(search.SAVED_QUERIES), "every saved query is tested"
    found: dict[str, set[str]] = {}

    async def all_found() -> bool:
        for name, saved in search.SAVED_QUERIES.items():
            # this test's workflows only: the dev server is shared by the whole session
            mine = f"({saved.query}) AND {search.on_task_queues(running.task_queues())}"
            found[name] = {w.id for w in await Service(client).list_workflows(mine)}
        return found == expected

    try:
        await eventually(all_found, "every saved query finds its workflows")
    except AssertionError:
        assert found == expected
    for case in (escalated, breached, stalled, ordinary):
        await assert_private(client.get_workflow_handle(f"case-{case.case_id}"))
    await assert_private(client.get_workflow_handle(f"collections-{failure.invoice_id}"))


async def test_list_command_runs_the_saved_and_raw_queries(
    dev_env: WorkflowEnvironment, running: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = dev_env.client
    data = open_case(amount="20000.00")
    await Service(client, running).cases.open(data)
    await Service(client).cases.act(
        data.case_id, Escalate(reason="Meter", severity=Severity.C, by=AGENT)
    )
    workflow_id = f"case-{data.case_id}"

    async def listed() -> bool:
        return workflow_id in {w.id for w in await Service(client).list_workflows("escalated")}

    await eventually(listed, "the escalated case is listed")
    monkeypatch.setattr(cli.common.console, "width", 250)  # one row per workflow, ids unbroken
    env = {"TEMPORAL_ADDRESS": client.service_client.config.target_host}
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(starter.app, ["workflow", "list", *args], env=env)

    saved = await asyncio.to_thread(run, "--query", "escalated")
    assert saved.exit_code == 0, saved.output
    assert 'EscalatedToVianet = true AND ExecutionStatus = "Running"' in saved.output
    row = next(line for line in saved.output.splitlines() if workflow_id in line)
    for cell in ("BillingCase", "running", "escalation-pending", "20,000.00", "21Vianet"):
        assert cell in row
    assert_no_customer_data(saved.output)
    raw = await asyncio.to_thread(
        run, "-q", f'InvoiceId = "G000123456" AND CaseStatus = "x-{uuid.uuid4()}"'
    )
    assert raw.exit_code == 0 and "no workflows match" in raw.output
    unknown = await asyncio.to_thread(run, "--query", "breached-slas")
    assert unknown.exit_code == 1 and "no saved query 'breached-slas'" in unknown.output
    bad = await asyncio.to_thread(run, "--query", "CaseStatus ==== 1")
    assert bad.exit_code == 1 and "Temporal refused the filter" in bad.output


def test_the_managers_page_lists_every_saved_query() -> None:
    """docs/managers.md's table is what `starter.py workflow list` runs: same names, filters."""
    page = Path(__file__).parent.parent / "docs" / "managers.md"
    managers = page.read_text(encoding="utf-8")
    for name, saved in search.SAVED_QUERIES.items():
        assert f"| `{name}` | `{saved.query}` | {saved.shows} |" in managers
