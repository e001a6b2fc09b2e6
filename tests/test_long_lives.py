"""The longest realistic lives stay within the history budgets (time-skipping server, stand-in
activities): each run of a workflow keeps under HISTORY_BUDGET_BYTES and HISTORY_BUDGET_EVENTS,
and a workflow past its budget continues as new, carrying all of its state over.

- a case with 200 notes of 20,000 Chinese characters, 3 escalations to 21Vianet and 20 reopen
  cycles, then confirmed;
- a 120-day collections with every step of the default policy, a promise and a dispute pausing
  it, 40 partial payments and 20 repeated failures, then paid in full;
- the same collections on a worker whose budget is a few hundred events, so it continues as new
  many times: its state (balance, stage, suspensions, the pause clock) survives every run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import workflows.base
from core.models import (
    AddNote,
    BillingFailure,
    CaseStatus,
    CollectionsStatus,
    Confirm,
    EmailTemplate,
    Escalate,
    OpenDispute,
    Outcome,
    PaymentReceived,
    PromiseToPay,
    Reopen,
    Resolve,
    Severity,
    StartCollections,
    SubscriptionStatus,
    VianetResponse,
    VianetTicket,
)
from core.settings import ROOT, load_collections_policy
from tests.clock_support import eventually
from tests.workflow_support import FakeActivities, auto_approval, billing_failure, open_case
from worker import WORKFLOWS
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

# what every run of a workflow stays under: the budget it continues as new at, and the one more
# step (an update and what it queued) that may land before it does
HISTORY_BUDGET_BYTES = 6 * 1024 * 1024
HISTORY_BUDGET_EVENTS = 2_500
AGENT = "agent.li@partner.example.cn"
DAY = timedelta(days=1)
NOTE = "客户称十月账单中的虚拟机在九月已删除，请核对计量数据与删除记录。" * 600  # 19,800 chars
# suspended when due (a manager approving it: tests/test_accounts.py)
POLICY = auto_approval(load_collections_policy(ROOT / "config" / "collections_policy.toml"))


async def update(handle: WorkflowHandle[Any, Any], method: Any, arg: Any) -> Any:
    """execute_update, again under the same update id if it met the run closing by continue-as-new.
    The time-skipping test server then answers NOT_FOUND "Completed workflow" (its continue-as-new
    is not atomic: sdk-java#1538); the real server aborts the update with a retryable error and
    the SDK sends it to the new run by itself (temporal#6485)."""
    update_id = str(uuid.uuid4())
    for attempt in range(5):
        try:
            return await handle.execute_update(method, arg, id=update_id)
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND or attempt == 4:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


async def runs(client: Client, workflow_id: str, first_run_id: str) -> list[tuple[int, int]]:
    """(events, bytes) of every run of the workflow, the first to the last."""
    found: list[tuple[int, int]] = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        found.append((len(history.events), sum(e.ByteSize() for e in history.events)))
        last = history.events[-1]
        run_id = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return found


def within_budget(measured: list[tuple[int, int]]) -> None:
    for n, (events, size) in enumerate(measured, 1):
        assert events <= HISTORY_BUDGET_EVENTS, f"run {n}: {events} events"
        assert size <= HISTORY_BUDGET_BYTES, f"run {n}: {size:,} bytes"


def stored_once_in_order(seqs: list[int], last: int) -> None:
    assert sorted(set(seqs)) == list(range(1, last + 1)), "every event reached the database"


async def test_a_case_with_200_long_notes_3_escalations_and_20_reopens(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    data = open_case(amount="12340.00")
    handle = await time_env.client.start_workflow(
        BillingCaseWorkflow.run, data, id=f"case-{data.case_id}", task_queue=fake.task_queue
    )
    first_run = handle.result_run_id
    assert first_run is not None
    case = time_env.client.get_workflow_handle_for(BillingCaseWorkflow.run, handle.id)

    async def status_is(status: CaseStatus) -> None:
        async def check() -> bool:
            try:
                view = await case.query(BillingCaseWorkflow.view, rpc_timeout=timedelta(seconds=2))
            except RPCError:  # asked of the run that just continued as new: ask again
                return False
            return view.status is status

        await eventually(check)

    async def note(n: int) -> None:
        await update(case, BillingCaseWorkflow.note, AddNote(text=f"{n} {NOTE}", by=AGENT))

    notes = iter(range(1, 201))
    for escalation in range(3):
        for _ in range(20):
            await note(next(notes))
        await update(
            case, BillingCaseWorkflow.escalate, Escalate(reason=NOTE, severity=Severity.B, by=AGENT)
        )
        await update(
            case,
            BillingCaseWorkflow.vianet_ticket,
            VianetTicket(ticket_number=f"VN-2612000{escalation}", by=AGENT),
        )
        await update(case, BillingCaseWorkflow.vianet_response, VianetResponse(text=NOTE, by=AGENT))
    resolution = Resolve(outcome=Outcome.EXPLAINED, summary=NOTE, by=AGENT)
    for cycle in range(20):
        for _ in range(7):
            await note(next(notes))
        await update(case, BillingCaseWorkflow.resolve, resolution)
        await status_is(CaseStatus.RESOLVED)
        await update(case, BillingCaseWorkflow.reopen, Reopen(reason=f"{cycle} {NOTE}"))
    for rest in notes:
        await note(rest)
    await update(case, BillingCaseWorkflow.resolve, resolution)
    await status_is(CaseStatus.RESOLVED)
    await update(case, BillingCaseWorkflow.confirm, Confirm())
    final = await case.result()

    assert final.status is CaseStatus.CLOSED and final.reopen_count == 20
    assert len(final.escalations) == 3 and final.escalations[-1].response is not None
    measured = await runs(time_env.client, handle.id, first_run)
    assert len(measured) >= 3, "a life this long continues as new"
    within_budget(measured)
    stored_once_in_order([e.seq for p in fake.persisted for e in p.events], final.event_count)
    # the notes reached the database whole; the workflow keeps a bounded tail
    assert max(len(e.text) for p in fake.persisted for e in p.events) > 19_000
    assert len(final.timeline) <= workflows.base.TAIL_EVENTS
    # no email went out twice: keys are unique across the runs
    keys = [e.key for e in fake.emails]
    assert len(keys) == len(set(keys))
    assert fake.templates().count(EmailTemplate.CASE_RESOLVED) == 21


async def collections_life(
    env: WorkflowEnvironment, fake: FakeActivities, failure: BillingFailure
) -> tuple[Any, list[tuple[int, int]]]:
    """120 days: every step, a promise and a dispute, 40 part payments, 20 repeated failures."""
    start = await env.client.start_workflow(
        CollectionsWorkflow.run,
        StartCollections(failure=failure, policy=POLICY),
        id=f"collections-{failure.invoice_id}",
        task_queue=fake.task_queue,
    )
    first_run = start.result_run_id
    assert first_run is not None
    handle: WorkflowHandle[CollectionsWorkflow, Any] = env.client.get_workflow_handle_for(
        CollectionsWorkflow.run, start.id
    )
    payments = iter(range(1, 41))

    async def pay(amount: str) -> None:
        n = next(payments)
        await update(
            handle,
            CollectionsWorkflow.payment_received,
            PaymentReceived(
                payment_id=f"P{n}",
                invoice_id=failure.invoice_id,
                amount=Decimal(amount),
                received_at=await env.get_current_time(),
            ),
        )

    for n in range(2, 22):  # the billing run reports the failure again
        await update(
            handle,
            CollectionsWorkflow.add_failure,
            failure.model_copy(update={"failure_id": f"F{n}"}),
        )
    for _ in range(10):
        await pay("10.00")
    now = await env.get_current_time()
    await update(
        handle, CollectionsWorkflow.promise_to_pay, PromiseToPay(until=now + 5 * DAY, by=AGENT)
    )
    await env.sleep(6 * DAY)  # the promise lapses
    disputed = await update(
        handle, CollectionsWorkflow.open_dispute, OpenDispute(description="not ours", by=AGENT)
    )
    case = env.client.get_workflow_handle_for(
        BillingCaseWorkflow.run, f"case-{disputed.linked_case_id}"
    )
    await env.sleep(3 * DAY)
    upheld = Resolve(outcome=Outcome.CHARGE_UPHELD, summary="The charge stands.", by=AGENT)
    await update(case, BillingCaseWorkflow.resolve, upheld)
    for _ in range(15):  # through the notices, the suspension and the deletion warnings
        await env.sleep(7 * DAY)
        await pay("10.00")
    await env.sleep(14 * DAY)
    for _ in range(14):
        await pay("10.00")
    view = await handle.query(CollectionsWorkflow.view)
    await pay(str(view.balance))
    final = await handle.result()
    return final, await runs(env.client, start.id, first_run)


async def test_a_120_day_collections_life(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure(amount="50000.00", subscriptions=2)
    final, measured = await collections_life(time_env, fake, failure)
    assert final.status is CollectionsStatus.PAID and final.balance == Decimal("0.00")
    within_budget(measured)
    stored_once_in_order([e.seq for p in fake.collections for e in p.events], final.event_count)
    # the customer's account reactivates (the invoice no longer holds anything)
    await eventually(lambda: len(fake.subscription_changes) == 4)
    changes = [(c.subscription_id, c.status) for c in fake.subscription_changes]
    assert (
        sorted(s for _, s in changes)
        == [SubscriptionStatus.ACTIVE] * 2 + [SubscriptionStatus.SUSPENDED] * 2
    )
    sent = fake.templates()
    assert sent.count(EmailTemplate.COLLECTIONS_DELETION_WARNING) == 2
    assert EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF in sent


@pytest_asyncio.fixture
async def small_budget(time_env: WorkflowEnvironment) -> AsyncIterator[FakeActivities]:
    """A worker whose workflows continue as new every few hundred events (outside the sandbox,
    which would import its own copy of the budget)."""
    fake = FakeActivities(task_queue=f"small-{uuid.uuid4()}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workflows.base, "HISTORY_EVENTS_BUDGET", 150)
        async with Worker(
            time_env.client,
            task_queue=fake.task_queue,
            workflows=WORKFLOWS,
            activities=fake.all(),
            workflow_runner=UnsandboxedWorkflowRunner(),
            workflow_failure_exception_types=[Exception],
        ):
            yield fake


async def test_collections_continues_as_new_and_carries_its_state(
    time_env: WorkflowEnvironment, small_budget: FakeActivities
) -> None:
    fake = small_budget
    failure = billing_failure(amount="50000.00", subscriptions=2)
    final, measured = await collections_life(time_env, fake, failure)
    assert len(measured) >= 4, f"{len(measured)} runs"
    assert final.status is CollectionsStatus.PAID and final.paid == Decimal("50000.00")
    assert final.failures[0] == failure.failure_id and len(final.failures) == 21
    stored_once_in_order([e.seq for p in fake.collections for e in p.events], final.event_count)
    # the same business as in one run: suspended once, reactivated once, no email twice
    await eventually(lambda: len(fake.subscription_changes) == 4)
    changes = [c.status for c in fake.subscription_changes]
    assert sorted(changes) == [SubscriptionStatus.ACTIVE] * 2 + [SubscriptionStatus.SUSPENDED] * 2
    keys = [e.key for e in fake.emails]
    assert len(keys) == len(set(keys))
    assert fake.templates().count(EmailTemplate.COLLECTIONS_DELETION_WARNING) == 2
