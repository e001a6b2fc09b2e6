"""BillingCaseWorkflow on the time-skipping test server, with recorded stand-in activities."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from core.models import (
    AddNote,
    Assign,
    CasePolicy,
    CaseStatus,
    CaseView,
    Confirm,
    CustomerReply,
    EmailTemplate,
    EmailUndelivered,
    Escalate,
    EventKind,
    OpenCase,
    Outcome,
    Priority,
    Reopen,
    RequestInfo,
    Resolve,
    Severity,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Withdraw,
)
from tests.clock_support import eventually
from tests.workflow_support import FakeActivities, fake_worker, open_case
from workflows.billing_case import BillingCaseWorkflow

AGENT = "agent.li@partner.example.cn"
Handle = WorkflowHandle[BillingCaseWorkflow, CaseView]


async def start(env: WorkflowEnvironment, fake: FakeActivities, data: OpenCase) -> Handle:
    handle = await env.client.start_workflow(
        BillingCaseWorkflow.run,
        data,
        id=f"case-{data.case_id}",
        task_queue=fake.task_queue,
    )
    await eventually(lambda: EmailTemplate.OWNER_NEW_CASE in fake.templates())
    return handle


async def view(handle: Handle) -> CaseView:
    return await handle.query(BillingCaseWorkflow.view)


def credit(amount: str = "2000.00") -> Resolve:
    return Resolve(
        outcome=Outcome.CREDIT_ISSUED,
        summary="Credit note for the deleted VM",
        credit_amount=Decimal(amount),
        by=AGENT,
    )


async def test_intake_resolve_confirm_closes_the_loop(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    data = open_case()
    handle = await start(time_env, fake, data)
    assert fake.templates()[:2] == [EmailTemplate.CASE_ACKNOWLEDGED, EmailTemplate.OWNER_NEW_CASE]
    assert fake.emails[0].to == "finance@customer.example.cn"
    assert fake.emails[0].locale.value == "zh-CN"

    noted = await handle.execute_update(
        BillingCaseWorkflow.note, AddNote(text="checking", by=AGENT)
    )
    assert noted.timeline == []  # an update answers without the timeline: the query has it
    # the note is in the timeline (the owner's email may be recorded after it, or before)
    notes = [e for e in (await view(handle)).timeline if e.kind is EventKind.NOTE]
    assert [e.text for e in notes][-1:] == ["checking"]
    # the update answers once the customer has the resolution: no query needed after it
    resolved = await handle.execute_update(BillingCaseWorkflow.resolve, credit())
    assert resolved.status is CaseStatus.RESOLVED
    assert resolved.resolution is not None and resolved.resolution.customer_told_at is not None
    assert EmailTemplate.CASE_RESOLVED in fake.templates()
    await eventually(lambda: fake.persisted[-1].record.status is CaseStatus.RESOLVED)
    told = await view(handle)
    assert told.status is CaseStatus.RESOLVED
    assert told.resolution is not None and told.resolution.customer_told_at is not None
    assert told.sla[0].met_at is not None and told.sla[1].met_at is not None

    await handle.execute_update(BillingCaseWorkflow.confirm, Confirm())
    result = await handle.result()
    assert result.status is CaseStatus.CLOSED
    assert fake.templates()[-1] is EmailTemplate.CASE_CLOSED
    # every event reached the database exactly once, in order
    stored = [e.seq for p in fake.persisted for e in p.events]
    assert stored == list(range(1, len(result.timeline) + 1))
    assert fake.persisted[-1].record.status is CaseStatus.CLOSED
    assert fake.persisted[-1].record.credit_amount == Decimal("2000.00")
    keys = [e.key for e in fake.emails]
    assert len(keys) == len(set(keys))


async def test_bad_updates_are_refused_and_change_nothing(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    handle = await start(time_env, fake, open_case(amount="100.00"))
    before = await view(handle)

    refusals: list[tuple[Any, Any, str]] = [
        (BillingCaseWorkflow.resolve, credit("100.01"), "exceeds the disputed amount"),
        (BillingCaseWorkflow.confirm, Confirm(), "cannot confirm"),
        (
            BillingCaseWorkflow.vianet_ticket,
            VianetTicket(ticket_number="2611240001", by=AGENT),
            "cannot record a 21Vianet ticket number",
        ),
        (
            BillingCaseWorkflow.vianet_response,
            VianetResponse(text="ok", by=AGENT),
            "cannot record a 21Vianet response",
        ),
        (BillingCaseWorkflow.reopen, Reopen(reason="no"), "cannot reopen"),
    ]
    for update, arg, message in refusals:
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(update, arg)
        assert message in str(err.value.cause), (update, err.value.cause)

    # payloads that are not a valid Resolve never reach the handler
    for bad in (
        {"outcome": "bogus", "summary": "x", "by": AGENT},
        {"outcome": "credit-issued", "summary": "x", "credit_amount": "-5", "by": AGENT},
    ):
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("resolve", bad)

    after = await view(handle)
    assert after == before
    await handle.execute_update(BillingCaseWorkflow.withdraw, Withdraw(reason="test", by=AGENT))
    closed = await handle.result()
    with pytest.raises(RPCError):  # the workflow has ended: no handler runs
        await handle.execute_update(BillingCaseWorkflow.resolve, credit("1.00"))
    assert closed.status is CaseStatus.WITHDRAWN


async def test_sla_reminder_then_breach_alerts_the_manager(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    handle = await start(time_env, fake, open_case(priority=Priority.URGENT))
    await time_env.sleep(timedelta(minutes=46))  # 75 % of the 1 h first-response target
    await eventually(lambda: EmailTemplate.OWNER_SLA_REMINDER in fake.templates())
    assert not (await view(handle)).sla_breached
    await time_env.sleep(timedelta(minutes=15))
    await eventually(lambda: EmailTemplate.MANAGER_SLA_BREACH in fake.templates())
    breached = await view(handle)
    assert breached.sla_breached and breached.sla[0].breached and not breached.sla[1].breached
    breach = next(e for e in fake.emails if e.template is EmailTemplate.MANAGER_SLA_BREACH)
    assert breach.to == "billing-manager@partner.example.cn"
    assert breach.data.extra()["clock"] == "first response"
    await handle.execute_update(BillingCaseWorkflow.withdraw, Withdraw(reason="dup", by=AGENT))
    await handle.result()


async def test_waiting_on_customer_pauses_clocks_and_reminds(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    handle = await start(time_env, fake, open_case(priority=Priority.HIGH))
    asked = await handle.execute_update(
        BillingCaseWorkflow.request_info,
        RequestInfo(question="Please send the deletion receipt.", by=AGENT),
    )
    assert asked.status is CaseStatus.WAITING_ON_CUSTOMER
    assert asked.sla[1].paused and asked.sla[0].met_at is not None
    # a day past the 1-day resolution target, but the clock is paused: no breach
    await time_env.sleep(timedelta(days=3, minutes=1))
    await eventually(lambda: EmailTemplate.CUSTOMER_REMINDER in fake.templates())
    assert EmailTemplate.MANAGER_SLA_BREACH not in fake.templates()
    await time_env.sleep(timedelta(days=3))
    await eventually(lambda: fake.templates().count(EmailTemplate.CUSTOMER_REMINDER) == 2)
    await time_env.sleep(timedelta(days=3))
    await eventually(lambda: EmailTemplate.OWNER_CUSTOMER_SILENT in fake.templates())
    replied = await handle.execute_update(
        BillingCaseWorkflow.customer_reply, CustomerReply(text="Attached.")
    )
    assert replied.status is CaseStatus.OPEN and not replied.sla[1].paused
    assert replied.customer_reminders_sent == 2
    await handle.execute_update(BillingCaseWorkflow.withdraw, Withdraw(reason="x", by=AGENT))
    await handle.result()


async def test_escalation_to_21vianet_with_reminders_and_follow_up(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    handle = await start(time_env, fake, open_case())
    escalated = await handle.execute_update(
        BillingCaseWorkflow.escalate,
        Escalate(reason="Meter shows usage after deletion", severity=Severity.B, by=AGENT),
    )
    assert escalated.status is CaseStatus.ESCALATION_PENDING
    assert escalated.escalations[0].request_title.startswith("[B]")
    await eventually(lambda: EmailTemplate.CASE_ESCALATED in fake.templates())
    assert EmailTemplate.OWNER_FILE_ESCALATION in fake.templates()

    # no ticket number yet: the owner is reminded every hour
    await time_env.sleep(timedelta(hours=2, minutes=1))
    await eventually(lambda: fake.templates().count(EmailTemplate.OWNER_ESCALATION_REMINDER) == 2)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(BillingCaseWorkflow.resolve, credit())
    assert "vianet-response" in str(err.value.cause)

    waiting = await handle.execute_update(
        BillingCaseWorkflow.vianet_ticket, VianetTicket(ticket_number="VN-2611240042", by=AGENT)
    )
    assert waiting.status is CaseStatus.WAITING_ON_VIANET
    assert waiting.next_deadline_label == "21Vianet: response target"
    await time_env.sleep(timedelta(hours=4, minutes=1))  # severity B target
    await eventually(lambda: fake.templates().count(EmailTemplate.OWNER_ESCALATION_REMINDER) == 3)
    assert (await view(handle)).next_deadline_label == "21Vianet: follow up"
    await time_env.sleep(timedelta(days=1))
    await eventually(lambda: fake.templates().count(EmailTemplate.OWNER_ESCALATION_REMINDER) == 4)

    answered = await handle.execute_update(
        BillingCaseWorkflow.vianet_response,
        VianetResponse(text="Credit note CN-1 issued to the partner", by=AGENT),
    )
    assert answered.status is CaseStatus.OPEN
    assert answered.escalations[0].response is not None
    await handle.execute_update(BillingCaseWorkflow.resolve, credit())
    await eventually(lambda: EmailTemplate.CASE_RESOLVED in fake.templates())
    # the customer has the resolution once the workflow has seen the email go: then confirm
    await eventually(lambda: fake.persisted[-1].record.status is CaseStatus.RESOLVED)
    await eventually(lambda: len(fake.escalations) == 2)
    assert fake.escalations[-1].escalation.ticket_number == "VN-2611240042"
    await handle.execute_update(BillingCaseWorkflow.confirm, Confirm())
    result = await handle.result()
    assert result.status is CaseStatus.CLOSED and result.escalated


async def test_reopen_goes_back_to_resolution_then_window_closes(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    handle = await start(time_env, fake, open_case())
    explained = Resolve(outcome=Outcome.EXPLAINED, summary="Usage is from the backup.", by=AGENT)
    await handle.execute_update(BillingCaseWorkflow.resolve, explained)
    await eventually(lambda: fake.persisted[-1].record.status is CaseStatus.RESOLVED)
    reopened = await handle.execute_update(
        BillingCaseWorkflow.reopen, Reopen(reason="The backup was deleted too.")
    )
    assert reopened.status is CaseStatus.OPEN and reopened.reopen_count == 1
    assert reopened.resolution is None
    await eventually(lambda: EmailTemplate.CASE_REOPENED in fake.templates())
    await handle.execute_update(BillingCaseWorkflow.resolve, credit("500.00"))
    await eventually(lambda: fake.templates().count(EmailTemplate.CASE_RESOLVED) == 2)
    await eventually(lambda: fake.persisted[-1].record.status is CaseStatus.RESOLVED)
    await time_env.sleep(timedelta(days=7, minutes=1))  # nobody confirms: the window closes it
    result = await handle.result()
    assert result.status is CaseStatus.CLOSED and result.reopen_count == 1
    assert fake.templates()[-1] is EmailTemplate.CASE_CLOSED
    assert fake.persisted[-1].record.reopen_count == 1


async def test_withdraw_tells_the_customer(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    handle = await start(time_env, fake, open_case())
    await handle.execute_update(
        BillingCaseWorkflow.withdraw, Withdraw(reason="Customer paid in full", by=AGENT)
    )
    result = await handle.result()
    assert result.status is CaseStatus.WITHDRAWN and result.closed_at is not None
    assert fake.templates()[-1] is EmailTemplate.CASE_WITHDRAWN
    # the agent's reason is on the timeline, never in the letter
    assert fake.emails[-1].data.extra() == {}
    withdrawn = [e for e in result.timeline if e.kind is EventKind.WITHDRAWN]
    assert [e.text for e in withdrawn] == ["Customer paid in full"]


async def test_bounced_resolution_returns_to_the_agent(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    fake.reject.add(EmailTemplate.CASE_RESOLVED)
    handle = await start(time_env, fake, open_case())
    await handle.execute_update(BillingCaseWorkflow.resolve, credit())
    await eventually(lambda: EmailTemplate.OWNER_EMAIL_BOUNCED in fake.templates())
    back = await view(handle)
    assert back.status is CaseStatus.OPEN and back.resolution is None
    assert any(e.kind is EventKind.EMAIL_BOUNCED for e in back.timeline)
    bounce = fake.emails[-1]
    assert bounce.to == AGENT and bounce.data.extra()["bounced_template"] == "case_resolved"

    fake.reject.clear()
    await handle.execute_update(
        BillingCaseWorkflow.update_contact, UpdateContact(email="ap@customer.example.cn", by=AGENT)
    )
    await handle.execute_update(BillingCaseWorkflow.resolve, credit())
    await eventually(lambda: EmailTemplate.CASE_RESOLVED in fake.templates())
    assert fake.emails[-1].to == "ap@customer.example.cn"
    await eventually(lambda: fake.persisted[-1].record.status is CaseStatus.RESOLVED)
    await handle.execute_update(BillingCaseWorkflow.confirm, Confirm())
    assert (await handle.result()).status is CaseStatus.CLOSED


async def status_after(env: WorkflowEnvironment, handle: Handle, wait: timedelta) -> CaseStatus:
    await env.sleep(wait)  # the time-skipping server moves its clock on
    for _ in range(100):  # and the worker gets to the timer that fired
        current = (await view(handle)).status
        if current is not CaseStatus.RESOLVING:
            return current
        await asyncio.sleep(0.02)
    return CaseStatus.RESOLVING


async def test_an_accepted_resolution_is_told_after_the_window_unless_it_bounces(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    """Under SendGrid, accepted is not delivered: the case waits for the delivery (the Event
    Webhook) or for the window to pass without a bounce; a bounce meanwhile sends it back."""
    policy = CasePolicy(told_when_delivered=True, no_bounce_window=timedelta(hours=1))
    quiet = await start(time_env, fake, open_case(policy=policy))
    bounced = await start(time_env, fake, open_case(policy=policy))
    for handle in (quiet, bounced):
        answer = await handle.execute_update(BillingCaseWorkflow.resolve, credit())
        assert answer.status is CaseStatus.RESOLVING
        assert answer.waiting_for == "the resolution email to reach the customer"
    undelivered = EmailUndelivered(
        key="k", event="bounce", address="finance@customer.example.cn", template="case_resolved"
    )
    await bounced.signal(BillingCaseWorkflow.email_undelivered, undelivered)
    assert await status_after(time_env, quiet, timedelta(minutes=30)) is CaseStatus.RESOLVING
    assert (await view(bounced)).status is CaseStatus.OPEN
    assert await status_after(time_env, quiet, timedelta(minutes=31)) is CaseStatus.RESOLVED
    told = await view(quiet)
    assert told.resolution is not None and told.resolution.customer_told_at is not None


async def test_an_assign_in_the_opening_task_comes_after_opened(
    time_env: WorkflowEnvironment,
) -> None:
    """Issue 23, bug 5: an `assign` that reaches the worker in the same workflow task as the start
    (update-with-start) is recorded after "opened", as it happened, not before it."""
    fake = FakeActivities()
    data = open_case(owner=None)
    start_case = WithStartWorkflowOperation(
        BillingCaseWorkflow.run,
        data,
        id=f"case-{data.case_id}",
        task_queue=fake.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
    async with fake_worker(time_env.client, fake):
        assigned = await time_env.client.execute_update_with_start_workflow(
            BillingCaseWorkflow.assign,
            Assign(agent=AGENT, by=AGENT),
            start_workflow_operation=start_case,
        )
        assert assigned.owner == AGENT
        handle = await start_case.workflow_handle()
        timeline = (await view(handle)).timeline
        assert [e.kind for e in timeline][:2] == [EventKind.OPENED, EventKind.ASSIGNED]
        assert [e.seq for e in timeline] == sorted(e.seq for e in timeline)
        await handle.execute_update(BillingCaseWorkflow.withdraw, Withdraw(reason="x", by=AGENT))
        await handle.result()
