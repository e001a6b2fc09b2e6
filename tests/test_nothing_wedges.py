"""Data never wedges a workflow (time-skipping server, stand-in activities).

A step that fails for good is recorded, the workflow says it needs attention (search attribute,
details, its views), a manager is told once, and an operator retries or skips it; a reminder
that runs out asks a manager instead of going on for ever; a signal or a link that cannot be
applied changes nothing and never fails the workflow.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from core import search
from core.models import (
    AddNote,
    Attention,
    BillingFailure,
    CasePolicy,
    CaseStatus,
    CollectionsStatus,
    DisputeOutcome,
    EmailTemplate,
    Escalate,
    EventKind,
    OpenDispute,
    Outcome,
    PaymentReceived,
    ResumePolicy,
    RetryStep,
    Severity,
    SkipStep,
    StartCollections,
    VianetTicket,
)
from core.settings import ROOT, load_collections_policy
from tests.clock_support import eventually
from tests.workflow_support import FakeActivities, billing_failure, open_case
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

AGENT = "agent.li@partner.example.cn"
MANAGER = "billing-manager@partner.example.cn"
POLICY = load_collections_policy(ROOT / "config" / "collections_policy.toml")


async def attention(handle: WorkflowHandle[Any, Any]) -> str | None:
    described = await handle.describe()
    return described.typed_search_attributes.get(search.NEEDS_ATTENTION)


async def start_collections(
    env: WorkflowEnvironment, fake: FakeActivities, failure: BillingFailure
) -> WorkflowHandle[CollectionsWorkflow, Any]:
    return await env.client.start_workflow(
        CollectionsWorkflow.run,
        StartCollections(failure=failure, policy=POLICY),
        id=f"collections-{failure.invoice_id}",
        task_queue=fake.task_queue,
    )


async def test_a_step_the_database_refuses_waits_for_an_operator(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    # the case's first save is refused for good, twice: retried once after a "fix", then skipped
    fake.fail_next("persist_case", "DataRefused", "the database refused the cases row: NUL", 2)
    data = open_case()
    handle = await time_env.client.start_workflow(
        BillingCaseWorkflow.run, data, id=f"case-{data.case_id}", task_queue=fake.task_queue
    )

    async def stuck() -> bool:
        return await attention(handle) == search.FAILED_STEP

    await eventually(stuck)
    view = await handle.query(BillingCaseWorkflow.view)
    assert view.needs_attention and "the database refused the cases row" in view.needs_attention
    assert EventKind.STEP_FAILED in [e.kind for e in view.timeline]
    told = [e for e in fake.emails if e.template is EmailTemplate.MANAGER_NEEDS_ATTENTION]
    assert [str(e.to) for e in told] == [MANAGER] and "NUL" in told[0].data.extra()["error"]
    # the case still takes actions while its step waits
    await handle.execute_update(BillingCaseWorkflow.note, AddNote(text="still here", by=AGENT))

    answer = await handle.execute_update(BillingCaseWorkflow.retry_step, RetryStep(by=AGENT))
    assert answer.decision == "retry" and answer.step == "save to the database"
    await eventually(stuck)  # it failed once more: a second manager email
    await eventually(lambda: len([e for e in fake.emails if e.template is told[0].template]) == 2)
    skipped = await handle.execute_update(
        BillingCaseWorkflow.skip_step, SkipStep(reason="row fixed by hand", by=AGENT)
    )
    assert skipped.decision == "skip"

    async def clear() -> bool:
        return await attention(handle) is None

    await eventually(clear)
    # the emails the case owed went out after all, and the later events were saved
    await eventually(lambda: EmailTemplate.CASE_ACKNOWLEDGED in fake.templates())
    await eventually(lambda: bool(fake.persisted))
    saved = [e.kind for p in fake.persisted for e in p.events]
    assert EventKind.STEP_SKIPPED in saved
    assert (await handle.query(BillingCaseWorkflow.view)).needs_attention is None
    with pytest.raises(WorkflowUpdateFailedError) as nothing:
        await handle.execute_update(BillingCaseWorkflow.retry_step, RetryStep(by=AGENT))
    assert "no failed step" in str(nothing.value.cause)
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING


async def test_an_unfiled_request_asks_a_manager_after_the_last_reminder(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    policy = CasePolicy(ticket_reminders_max=3)
    data = open_case(policy=policy)
    handle = await time_env.client.start_workflow(
        BillingCaseWorkflow.run, data, id=f"case-{data.case_id}", task_queue=fake.task_queue
    )
    await handle.execute_update(
        BillingCaseWorkflow.escalate, Escalate(reason="Meter", severity=Severity.B, by=AGENT)
    )
    await time_env.sleep(timedelta(hours=10))  # hourly: three reminders, then the manager
    reminders = EmailTemplate.OWNER_ESCALATION_REMINDER
    await eventually(lambda: EmailTemplate.MANAGER_NEEDS_ATTENTION in fake.templates())
    assert fake.templates().count(reminders) == 3
    view = await handle.query(BillingCaseWorkflow.view)
    assert view.next_deadline_label != "21Vianet: ticket number missing"  # no more reminders
    assert view.needs_attention and "after 3 reminders" in view.needs_attention
    assert await attention(handle) == Attention.TICKET_NOT_FILED
    # filing it at last clears the flag
    await handle.execute_update(
        BillingCaseWorkflow.vianet_ticket, VianetTicket(ticket_number="VN-26120001", by=AGENT)
    )
    assert await attention(handle) is None
    assert fake.templates().count(reminders) == 3


async def test_a_later_failure_of_another_tenant_or_currency_is_refused(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure(amount="5000.00")
    handle = await start_collections(time_env, fake, failure)
    stranger = billing_failure(invoice_id=failure.invoice_id, failure_id="F-2")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CollectionsWorkflow.add_failure, stranger)
    assert "customer.tenant_id" in str(refused.value.cause)
    dollars = failure.model_copy(update={"failure_id": "F-3", "currency": "USD"})
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CollectionsWorkflow.add_failure, dollars)
    assert "currency" in str(refused.value.cause)
    again = failure.model_copy(update={"failure_id": "F-4", "amount_due": Decimal("6000.00")})
    joined = await handle.execute_update(CollectionsWorkflow.add_failure, again)
    assert joined.amount_due == Decimal("6000.00") and joined.failures == [
        failure.failure_id,
        "F-4",
    ]


async def test_payments_never_total_more_than_the_column_holds(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure(amount="999999999999.99")
    handle = await start_collections(time_env, fake, failure)

    def payment(n: int, amount: str) -> PaymentReceived:
        return PaymentReceived(
            payment_id=f"P{n}",
            invoice_id=failure.invoice_id,
            amount=Decimal(amount),
            received_at=failure.failed_at,
        )

    await handle.execute_update(CollectionsWorkflow.payment_received, payment(1, "999999999999.00"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CollectionsWorkflow.payment_received, payment(2, "1.00"))
    assert "amount: the payments" in str(refused.value.cause)
    view = await handle.query(CollectionsWorkflow.view)
    assert view.paid == Decimal("999999999999.00")


async def test_a_link_to_a_case_that_does_not_exist_resumes_the_policy(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    """The issue's first finding: `dispute --case` with a mistyped case id failed collections."""
    failure = billing_failure()
    handle = await start_collections(time_env, fake, failure)
    await handle.execute_update(
        CollectionsWorkflow.open_dispute,
        OpenDispute(case_id="BC-20990101-ABCDEF", description="wrong", by=AGENT),
    )

    async def resumed() -> bool:
        view = await handle.query(CollectionsWorkflow.view)
        return view.status is CollectionsStatus.ACTIVE and view.linked_case_id is None

    await eventually(resumed)
    timeline = (await handle.query(CollectionsWorkflow.view)).timeline
    assert any("BC-20990101-ABCDEF not linked" in e.text for e in timeline)
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING


async def test_an_outcome_that_cannot_apply_changes_nothing_and_asks_a_manager(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure(amount="5000.00")
    handle = await start_collections(time_env, fake, failure)
    disputed = await handle.execute_update(
        CollectionsWorkflow.open_dispute, OpenDispute(description="not ours", by=AGENT)
    )
    case_id = disputed.linked_case_id
    assert case_id is not None
    for bad in (
        DisputeOutcome(case_id=case_id, outcome=Outcome.CREDIT_ISSUED, credit_amount=Decimal(-5)),
        DisputeOutcome(
            case_id=case_id, outcome=Outcome.CREDIT_ISSUED, credit_amount=Decimal("1E+999999")
        ),
        DisputeOutcome(
            case_id=case_id,
            outcome=Outcome.CREDIT_ISSUED,
            credit_amount=Decimal(100),
            tenant_id="00000000-0000-4000-8000-000000000000",
        ),
    ):
        await handle.signal(CollectionsWorkflow.dispute_resolved, bad)

    async def flagged() -> bool:
        return await attention(handle) == Attention.DISPUTE_REFUSED

    await eventually(flagged)
    view = await handle.query(CollectionsWorkflow.view)
    assert view.status is CollectionsStatus.PAUSED_DISPUTE and view.credited == Decimal("0.00")
    assert sum(e.kind is EventKind.DISPUTE_REFUSED for e in view.timeline) == 3
    # one manager email for the flag, however many refusals
    await eventually(lambda: EmailTemplate.MANAGER_NEEDS_ATTENTION in fake.templates())
    assert fake.templates().count(EmailTemplate.MANAGER_NEEDS_ATTENTION) == 1
    resumed = await handle.execute_update(
        CollectionsWorkflow.resume, ResumePolicy(reason="the case was closed by hand", by=AGENT)
    )
    assert resumed.status is CollectionsStatus.ACTIVE and resumed.needs_attention is None
    assert await attention(handle) is None
    child = time_env.client.get_workflow_handle_for(BillingCaseWorkflow.run, f"case-{case_id}")
    assert (await child.query(BillingCaseWorkflow.view)).status is CaseStatus.OPEN
