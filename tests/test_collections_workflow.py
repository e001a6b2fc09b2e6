"""CollectionsWorkflow on the time-skipping test server: the default policy walked day by day."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from core import search
from core.ids import account_workflow_id
from core.models import (
    AccountView,
    BillingFailure,
    CollectionsPolicy,
    CollectionsReply,
    CollectionsStatus,
    CollectionsView,
    Confirm,
    DecideSuspension,
    EmailDelivered,
    EmailTemplate,
    EmailUndelivered,
    EventKind,
    NoticeOutcome,
    NoticeState,
    OpenDispute,
    Outcome,
    PaymentReceived,
    PromiseToPay,
    ReportFraud,
    Resolve,
    StartCollections,
    SubscriptionStatus,
    TriageReply,
    Waive,
    Withdraw,
)
from core.settings import ROOT, load_case_policy, load_collections_policy
from tests.clock_support import eventually
from tests.codec_support import replay_and_record
from tests.workflow_support import FakeActivities, auto_approval, billing_failure, fake_worker
from workflows.account import AccountWorkflow
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow
from workflows.collections.rules import Collections

SHIPPED = load_collections_policy(ROOT / "config" / "collections_policy.toml")
# the walks below suspend when the step falls due (tests/test_accounts.py asks a manager)
POLICY = auto_approval(SHIPPED)
CASE_POLICY = load_case_policy(ROOT / "config" / "case_policy.toml")
Handle = WorkflowHandle[CollectionsWorkflow, CollectionsView]
DAY = timedelta(days=1)


async def start(
    env: WorkflowEnvironment,
    fake: FakeActivities,
    failure: BillingFailure,
    policy: CollectionsPolicy = POLICY,
) -> Handle:
    """As the triggers do: `collections-<invoice>` started with its first failure."""
    handle = await env.client.start_workflow(
        CollectionsWorkflow.run,
        StartCollections(failure=failure, policy=policy, case_policy=CASE_POLICY),
        id=f"collections-{failure.invoice_id}",
        task_queue=fake.task_queue,
    )
    await eventually(lambda: EmailTemplate.COLLECTIONS_PAYMENT_FAILED in sent(fake))
    return handle


def sent(fake: FakeActivities) -> list[EmailTemplate]:
    return [e.template for e in fake.emails]


def persisted(fake: FakeActivities, kind: EventKind) -> bool:
    """Whether any save so far carried an event of `kind` (a later save carries newer ones)."""
    return any(e.kind is kind for saved in fake.collections for e in saved.events)


async def view(handle: Handle) -> CollectionsView:
    return await handle.query(CollectionsWorkflow.view)


async def account_view(env: WorkflowEnvironment, failure: BillingFailure) -> AccountView:
    """The customer's account, where the invoice's suspensions are held."""
    account = account_workflow_id(failure.customer.tenant_id)
    handle = env.client.get_workflow_handle_for(AccountWorkflow.run, account)
    return await handle.query(AccountWorkflow.view)


async def day(env: WorkflowEnvironment, handle: Handle, n: float) -> None:
    """Move the clock to day `n` after the start of the workflow."""
    started = (await view(handle)).first_failed_at
    target = started + timedelta(days=n)
    now = await env.get_current_time()
    if target > now:
        await env.sleep(target - now)


def pay(failure: BillingFailure, amount: str, payment_id: str) -> PaymentReceived:
    return PaymentReceived(
        payment_id=payment_id,
        invoice_id=failure.invoice_id,
        amount=Decimal(amount),
        received_at=datetime(2026, 12, 1, tzinfo=failure.failed_at.tzinfo),
    )


def step_days(v: CollectionsView) -> dict[str, float]:
    """Each policy step's day, as it happened."""
    return {
        e.text: round((e.at - v.first_failed_at) / DAY, 2)
        for e in v.timeline
        if e.kind is EventKind.POLICY_STEP
    }


async def test_whole_policy_without_payment(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure()
    handle = await start(time_env, fake, failure)
    await day(time_env, handle, 2.9)
    assert sent(fake) == [EmailTemplate.COLLECTIONS_PAYMENT_FAILED]
    # the customer gets the billing system's reason as a code; its words stay on the timeline
    assert fake.emails[0].data.extra() == {"failure": "card-declined"}
    await day(time_env, handle, 7.01)
    await eventually(lambda: EmailTemplate.COLLECTIONS_FINAL_NOTICE in sent(fake))
    notice = next(e for e in fake.emails if e.template is EmailTemplate.COLLECTIONS_FINAL_NOTICE)
    started = (await view(handle)).first_failed_at
    assert datetime.fromisoformat(notice.data.extra()["suspension_date"]) == started + 10 * DAY
    assert not fake.subscription_changes

    await day(time_env, handle, 10.01)
    await eventually(lambda: len(fake.subscription_changes) == 2)
    assert {c.status for c in fake.subscription_changes} == {SubscriptionStatus.SUSPENDED}
    await eventually(lambda: EmailTemplate.COLLECTIONS_SUSPENDED in sent(fake))
    suspended = await view(handle)
    assert sorted(suspended.suspended_subscriptions) == sorted(failure.subscription_ids)
    assert suspended.data_deletion_at == suspended.suspended_at + 90 * DAY  # type: ignore[operator]

    await day(time_env, handle, 120)
    await eventually(lambda: EmailTemplate.MANAGER_COLLECTIONS_HAND_OFF in sent(fake))
    warnings = [e for e in fake.emails if e.template is EmailTemplate.COLLECTIONS_DELETION_WARNING]
    assert [w.data.extra()["days_left"] for w in warnings] == ["49", "9"]
    handed = await view(handle)
    assert handed.status is CollectionsStatus.HANDED_OFF
    assert step_days(handed) == {
        "payment-failed": 0,
        "reminder": 3,
        "final-notice": 7,
        "suspension": 10,
        "deletion-warning": 50,
        "last-deletion-warning": 90,
        "hand-off": 95,
    }
    await day(time_env, handle, 126)  # 30 days after the hand-off
    result = await handle.result()
    assert result.status is CollectionsStatus.EXPIRED
    assert fake.collections[-1].view.status is CollectionsStatus.EXPIRED
    stored = [e.seq for p in fake.collections for e in p.events]
    assert stored == list(range(1, len(result.timeline) + 1))


async def test_a_failure_in_the_same_task_as_the_start_comes_after_the_first(
    time_env: WorkflowEnvironment,
) -> None:
    """A busy worker gets the start and a later failure's update in one workflow task, and runs
    the update's handler before the run method: the failure that started it stays the first."""
    fake = FakeActivities()
    failure = billing_failure()
    handle = await time_env.client.start_workflow(
        CollectionsWorkflow.run,
        StartCollections(failure=failure, policy=POLICY, case_policy=CASE_POLICY),
        id=f"collections-{failure.invoice_id}",
        task_queue=fake.task_queue,
    )
    later = failure.model_copy(update={"failure_id": "F-LATER"})
    # no worker yet: the update waits in the workflow's first task with the start
    joining = asyncio.create_task(handle.execute_update(CollectionsWorkflow.add_failure, later))
    await asyncio.sleep(0.5)
    async with fake_worker(time_env.client, fake):
        joined = await joining
        assert joined.failures == [failure.failure_id, "F-LATER"]
        v = await view(handle)
        taken = [e.data["failure_id"] for e in v.timeline if e.kind is EventKind.BILLING_FAILED]
        assert taken == [failure.failure_id, "F-LATER"]
        await replay_and_record(
            time_env.client, await handle.fetch_history(), "collections_failure_with_the_start"
        )


@pytest.mark.parametrize("pay_on_day", [1, 5, 8, 12, 60, 100])
async def test_partial_then_full_payment_at_each_stage(
    time_env: WorkflowEnvironment, fake: FakeActivities, pay_on_day: int
) -> None:
    failure = billing_failure(amount="5000.00")
    handle = await start(time_env, fake, failure)
    await day(time_env, handle, pay_on_day)
    partial = await handle.execute_update(
        CollectionsWorkflow.payment_received, pay(failure, "1200.50", "P1")
    )
    assert partial.balance == Decimal("3799.50") and not partial.status.is_final
    again = await handle.execute_update(
        CollectionsWorkflow.payment_received, pay(failure, "1200.50", "P1")
    )
    assert again.balance == Decimal("3799.50")  # the same payment id counts once
    suspended_before = list(partial.suspended_subscriptions)
    await handle.execute_update(CollectionsWorkflow.payment_received, pay(failure, "3799.50", "P2"))
    result = await handle.result()
    assert result.status is CollectionsStatus.PAID and result.balance == 0
    assert result.suspended_subscriptions == []
    # the account reactivates what nothing holds any more, and tells the customer
    expected = (
        EmailTemplate.COLLECTIONS_REACTIVATED
        if suspended_before
        else EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED
    )
    await eventually(lambda: fake.emails[-1].template is expected)
    reactivated = [c for c in fake.subscription_changes if c.status is SubscriptionStatus.ACTIVE]
    assert sorted(c.subscription_id for c in reactivated) == sorted(suspended_before)


async def test_partial_payment_keeps_the_policy_going(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure(amount="800.00")
    handle = await start(time_env, fake, failure)
    await handle.execute_update(CollectionsWorkflow.payment_received, pay(failure, "300.00", "P1"))
    await day(time_env, handle, 10.01)
    await eventually(lambda: EmailTemplate.COLLECTIONS_SUSPENDED in sent(fake))
    assert (await view(handle)).balance == Decimal("500.00")
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(
            CollectionsWorkflow.payment_received,
            pay(failure, "1.00", "P9").model_copy(update={"currency": "USD"}),
        )
    assert "currency" in str(err.value.cause)
    await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="goodwill", by="mgr"))
    await handle.result()


@pytest.mark.parametrize("outcome", ["upheld", "partial-credit", "full-credit", "withdrawn"])
async def test_dispute_pauses_the_policy_until_its_outcome(
    time_env: WorkflowEnvironment, fake: FakeActivities, outcome: str
) -> None:
    failure = billing_failure(amount="5000.00")
    handle = await start(time_env, fake, failure)
    await day(time_env, handle, 5)
    disputed = await handle.execute_update(
        CollectionsWorkflow.open_dispute,
        OpenDispute(description="We were billed twice for November", by="agent@partner.cn"),
    )
    assert disputed.status is CollectionsStatus.PAUSED_DISPUTE
    case_id = disputed.linked_case_id
    assert case_id is not None and case_id.startswith("BC-")  # unique for ever, never a guess
    case = time_env.client.get_workflow_handle_for(BillingCaseWorkflow.run, f"case-{case_id}")
    await eventually(lambda: EmailTemplate.CASE_ACKNOWLEDGED in sent(fake))
    opened = await case.query(BillingCaseWorkflow.view)
    assert opened.collections_workflow_id == handle.id
    assert opened.details.disputed_amount == Decimal("5000.00")

    await day(time_env, handle, 25)  # well past day 10: nothing is suspended while disputed
    assert not fake.subscription_changes
    assert EmailTemplate.COLLECTIONS_FINAL_NOTICE not in sent(fake)

    agent = "agent@partner.cn"
    if outcome == "withdrawn":
        await case.execute_update(BillingCaseWorkflow.withdraw, Withdraw(reason="paid", by=agent))
    else:
        resolution = {
            "upheld": Resolve(outcome=Outcome.CHARGE_UPHELD, summary="Charge is correct", by=agent),
            "partial-credit": Resolve(
                outcome=Outcome.CREDIT_ISSUED,
                summary="Half",
                credit_amount=Decimal("2000"),
                by=agent,
            ),
            "full-credit": Resolve(
                outcome=Outcome.CREDIT_ISSUED,
                summary="All",
                credit_amount=Decimal("5000"),
                by=agent,
            ),
        }[outcome]
        await case.execute_update(BillingCaseWorkflow.resolve, resolution)
    await eventually(lambda: persisted(fake, EventKind.DISPUTE_RESOLVED))
    if outcome != "withdrawn":  # before any result() lets the clock run past the reopen window
        await case.execute_update(BillingCaseWorkflow.confirm, Confirm())
    resumed = await view(handle)
    if outcome == "full-credit":
        assert resumed.status is CollectionsStatus.CREDITED
        assert (await handle.result()).balance == 0
    else:
        assert resumed.status is CollectionsStatus.ACTIVE
        expected = Decimal("3000.00") if outcome == "partial-credit" else Decimal("5000.00")
        assert resumed.balance == expected
        # the 20-day pause moved the rest of the policy: suspension on day 10 + 20 = 30
        assert resumed.next_step == "final-notice"
        assert resumed.next_step_at is not None
        assert round((resumed.next_step_at - resumed.first_failed_at) / DAY, 2) == 27
        await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="end test", by="m"))


async def test_fraud_suspends_at_once_and_payment_does_not_lift_it(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure()
    handle = await start(time_env, fake, failure)
    fraud = ReportFraud(reason="Crypto mining on a stolen card", by="risk@partner.cn")
    await handle.execute_update(CollectionsWorkflow.report_fraud, fraud)
    await eventually(lambda: EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED in sent(fake))
    assert EmailTemplate.MANAGER_FRAUD_REPORTED in sent(fake)
    told = {e.template: e.data.extra() for e in fake.emails}
    assert told[EmailTemplate.COLLECTIONS_FRAUD_SUSPENDED] == {}  # the signal is the manager's
    assert told[EmailTemplate.MANAGER_FRAUD_REPORTED]["reason"] == fraud.reason
    await eventually(lambda: len(fake.subscription_changes) == 2)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CollectionsWorkflow.report_fraud, fraud)
    assert "already reported" in str(refused.value.cause)
    await day(time_env, handle, 11)
    assert EmailTemplate.COLLECTIONS_FINAL_NOTICE not in sent(fake)  # suspension already done
    await handle.execute_update(CollectionsWorkflow.payment_received, pay(failure, "5000.00", "P"))
    result = await handle.result()
    assert result.status is CollectionsStatus.PAID and result.fraud
    await eventually(lambda: EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED in sent(fake))
    assert not [c for c in fake.subscription_changes if c.status is SubscriptionStatus.ACTIVE]
    assert len(result.suspended_subscriptions) == 2
    account = await account_view(time_env, failure)
    assert sorted(account.suspended_subscriptions) == sorted(failure.subscription_ids)
    assert account.fraud


async def test_promise_to_pay_pauses_then_resumes(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure()
    handle = await start(time_env, fake, failure)
    await day(time_env, handle, 4)
    now = await time_env.get_current_time()
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(
            CollectionsWorkflow.promise_to_pay, PromiseToPay(until=now + 60 * DAY, by="agent")
        )
    assert "until" in str(err.value.cause)
    promised = await handle.execute_update(
        CollectionsWorkflow.promise_to_pay, PromiseToPay(until=now + 10 * DAY, by="agent")
    )
    assert promised.status is CollectionsStatus.PAUSED_PROMISE
    await eventually(lambda: EmailTemplate.COLLECTIONS_PROMISE_ACCEPTED in sent(fake))
    await day(time_env, handle, 13.9)
    assert EmailTemplate.COLLECTIONS_FINAL_NOTICE not in sent(fake)
    await day(time_env, handle, 14.01)
    await eventually(lambda: persisted(fake, EventKind.PROMISE_LAPSED))
    lapsed = await view(handle)
    assert lapsed.status is CollectionsStatus.ACTIVE
    assert lapsed.next_step_at is not None  # day 7 + 10 paused
    assert round((lapsed.next_step_at - lapsed.first_failed_at) / DAY, 2) == 17
    await day(time_env, handle, 20.01)
    await eventually(lambda: EmailTemplate.COLLECTIONS_SUSPENDED in sent(fake))
    assert step_days(await view(handle))["suspension"] == 20
    await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="done", by="m"))
    await handle.result()


async def test_waive_after_suspension_reactivates(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure()
    handle = await start(time_env, fake, failure)
    await day(time_env, handle, 10.01)
    await eventually(lambda: len(fake.subscription_changes) == 2)
    waived = await handle.execute_update(
        CollectionsWorkflow.waive, Waive(reason="Long-standing customer", by="mgr@partner.cn")
    )
    assert waived.status is CollectionsStatus.WAIVED
    result = await handle.result()
    assert result.suspended_subscriptions == []
    assert fake.emails[-1].template is EmailTemplate.COLLECTIONS_CLOSED
    assert fake.emails[-1].data.extra() == {}  # why it was waived stays internal
    with pytest.raises(RPCError):  # the workflow has ended: no more actions
        await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="x", by="m"))


async def test_repeated_failures_join_the_running_workflow(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure(amount="100.00", subscriptions=1)
    handle = await start(time_env, fake, failure)
    again = failure.model_copy(update={"failure_id": "retry-2", "amount_due": Decimal("150.00")})
    same = await start_again(time_env, fake, failure)
    other = await start_again(time_env, fake, again)
    assert same.run_id is None or same.id == handle.id
    assert other.id == handle.id
    await eventually(
        lambda: len(fake.collections) > 0 and len(fake.collections[-1].view.failures) == 2
    )
    joined = await view(handle)
    assert joined.failures == [failure.failure_id, "retry-2"]
    assert joined.amount_due == Decimal("150.00")
    assert sent(fake).count(EmailTemplate.COLLECTIONS_PAYMENT_FAILED) == 1
    await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="x", by="m"))
    await handle.result()


async def start_again(
    env: WorkflowEnvironment, fake: FakeActivities, failure: BillingFailure
) -> Handle:
    """As the service does: start, or join the running workflow with `add_failure`."""
    try:
        return await env.client.start_workflow(
            CollectionsWorkflow.run,
            StartCollections(failure=failure, policy=POLICY, case_policy=CASE_POLICY),
            id=f"collections-{failure.invoice_id}",
            task_queue=fake.task_queue,
        )
    except WorkflowAlreadyStartedError:
        handle: Handle = env.client.get_workflow_handle_for(
            CollectionsWorkflow.run, f"collections-{failure.invoice_id}"
        )
        await handle.execute_update(CollectionsWorkflow.add_failure, failure)
        return handle


async def test_partner_center_refusal_alerts_a_manager(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    failure = billing_failure()
    fake.missing_subscriptions.add(failure.subscription_ids[0])
    handle = await start(time_env, fake, failure)
    await day(time_env, handle, 10.01)
    await eventually(lambda: EmailTemplate.MANAGER_NEEDS_ATTENTION in sent(fake))
    await eventually(lambda: EmailTemplate.COLLECTIONS_SUSPENDED in sent(fake))
    # the account suspends (its only writer): what Partner Center refused, it tells a manager
    alert = next(e for e in fake.emails if e.template is EmailTemplate.MANAGER_NEEDS_ATTENTION)
    assert alert.account is not None
    assert failure.subscription_ids[0] in alert.data.extra()["step"]
    assert "404" in alert.data.extra()["error"]
    account = await account_view(time_env, failure)
    assert account.suspended_subscriptions == [failure.subscription_ids[1]]
    assert {h.subscription_id for h in account.holds} == set(failure.subscription_ids)
    await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="x", by="m"))
    await handle.result()


async def test_a_reply_to_a_notice_holds_the_suspension_for_triage(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    handle = await start(time_env, fake, billing_failure())
    await day(time_env, handle, 8)  # the final notice went out on day 7
    await handle.signal(
        CollectionsWorkflow.customer_replied, CollectionsReply(text="金额不对", by="customer")
    )
    await eventually(lambda: persisted(fake, EventKind.CUSTOMER_REPLIED))
    held = await view(handle)
    assert held.needs_attention and "replied" in held.needs_attention
    await day(time_env, handle, 10.5)  # the suspension was due on day 10: it waits for triage
    assert not fake.subscription_changes
    await day(time_env, handle, 11.01)  # reply_triage_wait (3 days) after the reply: it goes on
    await eventually(lambda: len(fake.subscription_changes) == 2)
    assert step_days(await view(handle))["suspension"] == 11


async def test_triage_releases_the_hold_and_a_bounced_notice_waits_for_a_person(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    handle = await start(time_env, fake, billing_failure())
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(
            CollectionsWorkflow.triage_reply, TriageReply(decision="no-action", by="agent")
        )
    assert "nothing waits for triage" in str(err.value.cause)
    await day(time_env, handle, 7.5)
    bounced = EmailUndelivered(
        key="k", event="bounce", address="finance@yunfan.example.cn", template="x"
    )
    await handle.signal(CollectionsWorkflow.email_undelivered, bounced)
    await day(time_env, handle, 40)  # no suspension follows a notice that did not arrive
    assert not fake.subscription_changes
    released = await handle.execute_update(
        CollectionsWorkflow.triage_reply, TriageReply(decision="contact-confirmed", by="agent")
    )
    assert released.needs_attention is None
    await eventually(lambda: len(fake.subscription_changes) == 2)  # overdue: at once
    await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="done", by="m"))
    await handle.result()


async def test_an_overpayment_closes_the_invoice_and_keeps_the_rest_as_credit(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    """Issue 23 #2: the invoice takes what it owes, the rest is the customer's credit (state,
    view, timeline, the manager told, the letter); a payment id is one amount."""
    failure = billing_failure(amount="56780.00")
    handle = await start(time_env, fake, failure)
    await handle.execute_update(CollectionsWorkflow.payment_received, pay(failure, "100.00", "P1"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            CollectionsWorkflow.payment_received, pay(failure, "200.00", "P1")
        )
    assert "¥100.00" in str(refused.value.cause) and "¥200.00" in str(refused.value.cause)
    same = await handle.execute_update(
        CollectionsWorkflow.payment_received, pay(failure, "100.00", "P1")
    )
    assert same.balance == Decimal("56680.00")  # the same payment again: done, nothing changes
    await handle.execute_update(
        CollectionsWorkflow.payment_received, pay(failure, "99999899.00", "P2")
    )
    result = await handle.result()
    assert result.status is CollectionsStatus.PAID and result.balance == 0
    assert result.paid == Decimal("56780.00") and result.credit == Decimal("99943219.00")
    assert result.overpayment is not None and result.overpayment.applied == Decimal("56680.00")
    await eventually(lambda: persisted(fake, EventKind.CREDIT_KEPT))
    letter = fake.emails[-1]
    assert letter.template is EmailTemplate.COLLECTIONS_PAYMENT_RECEIVED
    assert letter.collections is not None and letter.collections.credit == result.credit
    told = [e for e in fake.emails if e.template is EmailTemplate.MANAGER_NEEDS_ATTENTION]
    assert told and "¥99,943,219.00" in told[-1].data.extra()["step"]


async def test_an_approved_suspension_shows_the_suspension_stage(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    """Issue 23 #3: approved and suspended, the stage is no longer awaiting-approval anywhere."""
    failure = billing_failure()
    handle = await start(time_env, fake, failure, policy=SHIPPED)
    await day(time_env, handle, 10.01)
    await eventually(lambda: persisted(fake, EventKind.SUSPENSION_ASKED))
    assert (await view(handle)).stage == "awaiting-approval"
    approved = await handle.execute_update(
        CollectionsWorkflow.approve_suspension, DecideSuspension(reason="批准", by="manager")
    )
    assert approved.stage == "suspension"
    await eventually(lambda: len(fake.subscription_changes) == 2)
    await eventually(lambda: fake.collections[-1].view.stage == "suspension")
    for _ in range(200):  # written by the main loop once the suspension's effects are out
        described = await handle.describe()
        if described.typed_search_attributes.get(search.COLLECTIONS_STAGE) == "suspension":
            break
        await asyncio.sleep(0.05)
    assert described.typed_search_attributes.get(search.COLLECTIONS_STAGE) == "suspension"
    await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="done", by="m"))
    await handle.result()


async def test_notice_events_at_the_start_of_a_continued_run_are_taken(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    """The hazard of issue 23: a continued run took `notice_outcome` and `email_delivered` only
    after its first alarm; now in the first workflow task too."""
    failure = billing_failure()
    data = StartCollections(failure=failure, policy=POLICY, case_policy=CASE_POLICY)
    carried = Collections.open(data, failure.failed_at)[0]
    outcome = NoticeOutcome(template=EmailTemplate.COLLECTIONS_FINAL_NOTICE, state=NoticeState.SENT)
    handle = await time_env.client.start_workflow(
        CollectionsWorkflow.run,
        data.model_copy(update={"carried": carried}),
        id=f"collections-{failure.invoice_id}",
        task_queue=fake.task_queue,
        start_signal="notice_outcome",
        start_signal_args=[outcome],
    )
    account = account_workflow_id(failure.customer.tenant_id)
    delivered = EmailDelivered(key=f"{account}/r/1-x", template="collections_final_notice")
    await handle.signal(CollectionsWorkflow.email_delivered, delivered)
    assert (await view(handle)).final_notice is NoticeState.SENT
    await eventually(lambda: len(fake.accounts) > 0)  # passed on: the account was started
    await handle.execute_update(CollectionsWorkflow.waive, Waive(reason="done", by="m"))
    await handle.result()
