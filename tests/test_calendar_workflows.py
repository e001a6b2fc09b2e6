"""The China business calendar in the workflows, on a time-skipping server started at the day
each story begins (run under faketime): a failure reported on 2026-02-13 walks through the Spring
Festival and its 调休 days; SLAs run across a weekend and National Day; 21Vianet is followed up
by working day; the histories replay (RECORD_HISTORIES=1 keeps them in tests/histories/)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.calendar import BusinessCalendar, china
from core.models import (
    Approval,
    CaseEvent,
    CaseView,
    CollectionsAction,
    CollectionsStatus,
    CollectionsView,
    DecideSuspension,
    EmailTemplate,
    EscalationView,
    EventKind,
    PaymentReceived,
    Priority,
    ReportFraud,
    Severity,
    StartCollections,
    VianetTicket,
    Waive,
    Withdraw,
)
from core.models.case_actions import Escalate
from core.settings import ROOT, Settings, load_case_policy, load_collections_policy
from service import Service
from tests.clock_support import eventually
from tests.codec_support import replay_and_record
from tests.test_calendar import CAL, cst  # 2026 from chinesecalendar
from tests.workflow_support import (
    FakeActivities,
    auto_approval,
    billing_failure,
    fake_worker,
    open_case,
    time_skipping,
)
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

# suspended when due (tests/test_accounts.py has a manager approve it)
POLICY = auto_approval(
    load_collections_policy(ROOT / "config" / "collections_policy.toml")
).model_copy(update={"calendar": CAL})
CASE_POLICY = load_case_policy(ROOT / "config" / "case_policy.toml").model_copy(
    update={"calendar": CAL}
)
AGENT = "agent.li@partner.example.cn"


def minute(at: datetime) -> datetime:
    """An instant as a Beijing wall clock, to the minute."""
    return CAL.local(at).replace(tzinfo=None, second=0, microsecond=0)


async def sleep_until(env: WorkflowEnvironment, at: datetime) -> None:
    now = await env.get_current_time()
    if at > now:
        await env.sleep(at - now)


def saved(batches: list[list[CaseEvent]], kind: EventKind) -> list[CaseEvent]:
    return [e for events in batches for e in events if e.kind is kind]


def collections_events(fake: FakeActivities, kind: EventKind) -> list[CaseEvent]:
    """The invoice's events and its customer's account's (which sends the policy's notices and
    suspends)."""
    batches = [s.events for s in fake.collections] + [s.events for s in fake.accounts]
    return saved(batches, kind)


def emails_sent(fake: FakeActivities) -> dict[str, list[datetime]]:
    """Each template the collections workflow (or the customer's account) sent, at the minutes
    it went (Beijing time)."""
    sent: dict[str, list[datetime]] = {}
    for event in collections_events(fake, EventKind.EMAIL_SENT):
        sent.setdefault(event.text, []).append(minute(event.at))
    return sent


async def start_collections(
    env: WorkflowEnvironment, fake: FakeActivities
) -> WorkflowHandle[CollectionsWorkflow, CollectionsView]:
    failure = billing_failure()
    return await env.client.start_workflow(
        CollectionsWorkflow.run,
        StartCollections(failure=failure, policy=POLICY, case_policy=CASE_POLICY),
        id=f"collections-{failure.invoice_id}",
        task_queue=fake.task_queue,
    )


async def test_a_failure_on_2026_02_13_walks_through_the_spring_festival(tmp_path: Path) -> None:
    reported = cst(2026, 2, 13, 3)  # a Friday, 03:00: the billing run's failure
    async with time_skipping(reported, tmp_path) as env, fake_worker(env.client) as fake:
        handle = await start_collections(env, fake)
        started = await handle.query(CollectionsWorkflow.view)
        assert minute(started.first_failed_at) == datetime(2026, 2, 13, 3)
        # nothing at 03:00: the first notice waits for the opening
        assert started.next_step == "payment-failed"
        assert started.next_step_at is not None
        assert minute(started.next_step_at) == datetime(2026, 2, 13, 9)
        assert not fake.emails

        result = await handle.result()  # the whole policy, then the hand-off closes
        assert result.status is CollectionsStatus.EXPIRED
        steps = {e.text: minute(e.at) for e in collections_events(fake, EventKind.POLICY_STEP)}
        assert steps == {
            "payment-failed": datetime(2026, 2, 13, 9),
            # business day 1 is Saturday the 14th (调休), then 15-23 off: day 3 is the 25th
            "reminder": datetime(2026, 2, 25, 9),
            # Saturday the 28th (调休) is day 6
            "final-notice": datetime(2026, 3, 2, 9),
            "suspension": datetime(2026, 3, 5, 9),
            # calendar days after the suspension (Partner Center deletes 90 days after it)
            "deletion-warning": datetime(2026, 4, 14, 9),
            "last-deletion-warning": datetime(2026, 5, 25, 9),  # the 24th is a Sunday
            "hand-off": datetime(2026, 5, 29, 9),
        }
        suspended = collections_events(fake, EventKind.SUSPENDED)
        assert [minute(e.at) for e in suspended] == [datetime(2026, 3, 5, 9)] * 2
        notice = next(
            e for e in fake.emails if e.template is EmailTemplate.COLLECTIONS_FINAL_NOTICE
        )
        named = datetime.fromisoformat(notice.data.extra()["suspension_date"])
        assert minute(named) == datetime(2026, 3, 5, 9)
        # every email to the customer went on a working day in business hours
        customer = [
            e for e in collections_events(fake, EventKind.EMAIL_SENT) if e.data["to"] == "customer"
        ]
        assert len(customer) == 6 and all(CAL.is_open(e.at) for e in customer)
        # 2026 is covered: no manager was told of an uncovered year
        assert not [e for e in fake.emails if e.template is EmailTemplate.MANAGER_NEEDS_ATTENTION]
        await replay_and_record(
            env.client, await handle.fetch_history(), "collections_spring_festival_calendar"
        )


async def test_a_customer_email_at_night_waits_for_the_opening_and_nothing_else_does(
    tmp_path: Path,
) -> None:
    async with (
        time_skipping(cst(2026, 2, 13, 10), tmp_path) as env,
        fake_worker(env.client) as fake,
    ):
        handle = await start_collections(env, fake)
        await eventually(lambda: "collections_payment_failed" in emails_sent(fake))
        # Saturday the 14th is worked, but 20:00 is after hours; then the Spring Festival
        await sleep_until(env, cst(2026, 2, 14, 20))
        view = await handle.query(CollectionsWorkflow.view)
        await handle.execute_update(
            CollectionsWorkflow.payment_received,
            PaymentReceived(
                payment_id="P-1",
                invoice_id=view.invoice_id,
                amount=Decimal("1000.00"),
                received_at=cst(2026, 2, 14, 20),
            ),
        )
        await handle.execute_update(
            CollectionsWorkflow.report_fraud, ReportFraud(reason="stolen card", by="manager")
        )
        # the manager is told and the subscriptions are suspended at once; the customer waits
        await eventually(lambda: "manager_fraud_reported" in emails_sent(fake))
        await eventually(lambda: len(fake.subscription_changes) == 2)
        assert emails_sent(fake)["manager_fraud_reported"] == [datetime(2026, 2, 14, 20)]
        assert "collections_payment_received" not in emails_sent(fake)

        await sleep_until(env, cst(2026, 2, 24, 9, 5))
        await eventually(lambda: "collections_fraud_suspended" in emails_sent(fake))
        sent = emails_sent(fake)
        assert sent["collections_payment_received"] == [datetime(2026, 2, 24, 9)]
        assert sent["collections_fraud_suspended"] == [datetime(2026, 2, 24, 9)]
        # paid in full at night: the workflow ends only once its last email went
        await sleep_until(env, cst(2026, 2, 24, 22))
        await handle.execute_update(
            CollectionsWorkflow.payment_received,
            PaymentReceived(
                payment_id="P-2",
                invoice_id=view.invoice_id,
                amount=Decimal("4000.00"),
                received_at=cst(2026, 2, 24, 22),
            ),
        )
        result = await handle.result()
        assert result.status is CollectionsStatus.PAID
        # the customer's account tells them (fraud still holds the subscriptions) at the opening
        await sleep_until(env, cst(2026, 2, 25, 9, 5))
        await eventually(lambda: len(emails_sent(fake)["collections_payment_received"]) == 2)
        assert emails_sent(fake)["collections_payment_received"][-1] == datetime(2026, 2, 25, 9)


def sla_due(view: CaseView) -> dict[str, datetime]:
    return {clock.name: minute(clock.due_at) for clock in view.sla if clock.due_at}


async def test_slas_across_a_weekend_and_national_day(tmp_path: Path) -> None:
    async with (
        time_skipping(cst(2026, 9, 18, 17), tmp_path) as env,
        fake_worker(env.client) as fake,
    ):

        async def open_one(priority: Priority) -> WorkflowHandle[BillingCaseWorkflow, CaseView]:
            data = open_case(priority=priority, policy=CASE_POLICY)
            return await env.client.start_workflow(
                BillingCaseWorkflow.run, data, id=f"case-{data.case_id}", task_queue=fake.task_queue
            )

        # Friday 17:00: four business hours are one on Friday and three on Sunday the 20th (调休)
        friday = await open_one(Priority.HIGH)
        assert sla_due(await friday.query(BillingCaseWorkflow.view)) == {
            "first response": datetime(2026, 9, 20, 12),
            "resolution": datetime(2026, 9, 20, 17),  # P1D: one working day's 9 hours
        }
        # the day before National Day, 16:00
        await sleep_until(env, cst(2026, 9, 30, 16))
        normal = await open_one(Priority.NORMAL)
        urgent = await open_one(Priority.URGENT)
        assert sla_due(await normal.query(BillingCaseWorkflow.view)) == {
            "first response": datetime(2026, 10, 8, 15),  # 2 h on the 30th, 6 h on the 8th
            "resolution": datetime(2026, 10, 10, 16),  # 27 h, Saturday the 10th is worked
        }
        assert sla_due(await urgent.query(BillingCaseWorkflow.view)) == {  # 24×7
            "first response": datetime(2026, 9, 30, 17),
            "resolution": datetime(2026, 10, 1, 0),
        }
        # nothing breaches over the holiday; the reminder comes at 75 % (6 business hours)
        await sleep_until(env, cst(2026, 10, 8, 12, 55))
        events = saved([p.events for p in fake.persisted], EventKind.SLA_BREACHED)
        assert {e.text for e in events} == {
            "first response SLA breached",
            "resolution SLA breached",
        }  # the urgent case's and the Friday case's, not the normal one's
        await sleep_until(env, cst(2026, 10, 8, 15, 5))
        await eventually(
            lambda: len(saved([p.events for p in fake.persisted], EventKind.SLA_BREACHED)) == 5
        )
        normal_view = await normal.query(BillingCaseWorkflow.view)
        assert [c.breached for c in normal_view.sla] == [True, False]
        breaches = saved([p.events for p in fake.persisted], EventKind.SLA_BREACHED)
        reminders = saved([p.events for p in fake.persisted], EventKind.SLA_REMINDER)
        assert datetime(2026, 10, 8, 15) in [minute(e.at) for e in breaches]
        assert datetime(2026, 10, 8, 13) in [minute(e.at) for e in reminders]
        cases = (friday, normal, urgent)
        for handle in cases:  # all withdrawn before any result: waiting on one skips time
            await handle.execute_update(
                BillingCaseWorkflow.withdraw, Withdraw(reason="x", by=AGENT)
            )
        for handle in cases:
            await handle.result()
        await replay_and_record(
            env.client, await normal.fetch_history(), "billing_case_sla_national_day"
        )


async def test_21vianet_is_followed_up_by_working_day(tmp_path: Path) -> None:
    async with (
        time_skipping(cst(2026, 9, 30, 16), tmp_path) as env,
        fake_worker(env.client) as fake,
    ):
        data = open_case(priority=Priority.HIGH, policy=CASE_POLICY)
        handle = await env.client.start_workflow(
            BillingCaseWorkflow.run, data, id=f"case-{data.case_id}", task_queue=fake.task_queue
        )
        await handle.execute_update(
            BillingCaseWorkflow.escalate,
            Escalate(reason="Meter shows usage after deletion", severity=Severity.B, by=AGENT),
        )
        await sleep_until(env, cst(2026, 9, 30, 16, 30))
        waiting = await handle.execute_update(
            BillingCaseWorkflow.vianet_ticket, VianetTicket(ticket_number="VN-2609300042", by=AGENT)
        )
        recorded: EscalationView = waiting.escalations[0]
        assert recorded.ticket_recorded_at is not None
        await sleep_until(env, cst(2026, 10, 13, 12))
        follow_ups = saved([p.events for p in fake.persisted], EventKind.VIANET_FOLLOW_UP)
        assert [minute(e.at) for e in follow_ups] == [
            # severity B: 4 business hours, 1.5 on the 30th and 2.5 on the 8th
            datetime(2026, 10, 8, 11, 30),
            datetime(2026, 10, 9, 11, 30),
            datetime(2026, 10, 10, 11, 30),  # Saturday, worked
            datetime(2026, 10, 12, 11, 30),
            datetime(2026, 10, 13, 11, 30),
        ]
        await handle.execute_update(BillingCaseWorkflow.withdraw, Withdraw(reason="x", by=AGENT))
        await handle.result()


async def test_a_year_not_covered_tells_a_manager_once(tmp_path: Path) -> None:
    """December 2026: the package has no 2027 yet. Collections reaching into January count
    weekends only, and one email (keyed by the year, whichever workflow sends it) says so."""
    december: BusinessCalendar = china(date(2026, 12, 3))
    assert december.uncovered == (2027,) or 2027 in december.years
    policy = POLICY.model_copy(update={"calendar": december})
    async with (
        time_skipping(cst(2026, 12, 28, 10), tmp_path) as env,
        fake_worker(env.client) as fake,
    ):
        handles = []
        for _ in range(2):
            failure = billing_failure()
            handles.append(
                await env.client.start_workflow(
                    CollectionsWorkflow.run,
                    StartCollections(failure=failure, policy=policy, case_policy=CASE_POLICY),
                    id=f"collections-{failure.invoice_id}",
                    task_queue=fake.task_queue,
                )
            )
        await eventually(lambda: len(emails_sent(fake).get("collections_payment_failed", [])) == 2)
        view = await handles[0].query(CollectionsWorkflow.view)
        assert view.next_step_at is not None
        # 3 business days after Monday the 28th: the 29th, the 30th, the 31st; next is 2027
        assert minute(view.next_step_at) == datetime(2026, 12, 31, 10)
        await sleep_until(env, cst(2026, 12, 31, 10, 5))
        await eventually(lambda: len(emails_sent(fake).get("collections_reminder", [])) == 2)
        alerts = [e for e in fake.emails if e.template is EmailTemplate.MANAGER_NEEDS_ATTENTION]
        if 2027 in december.years:  # a chinesecalendar that knows 2027: nothing to say
            assert not alerts
            return
        # each workflow asks (the final notice falls in 2027), under one key: the log sends once
        assert {e.key for e in alerts} == {"business-calendar/2027-not-covered"}
        assert "2027" in alerts[0].data.extra()["step"]
        assert alerts[0].to == "billing-manager@partner.example.cn"
        final = await handles[0].query(CollectionsWorkflow.view)
        assert final.next_step_at is not None
        # 2027-01-01 (New Year) counts as a weekday: weekends only
        assert minute(final.next_step_at) == datetime(2027, 1, 6, 10)


async def test_the_service_starts_workflows_with_the_settings_calendar(
    dev_env: WorkflowEnvironment, running: Settings
) -> None:
    """On the real stack (sealed payloads, the real worker), at whatever hour this runs: a case and
    a collections workflow started through the service carry the calendar the settings build."""
    settings = running.model_copy(update={"business_calendar": True})
    calendar = settings.calendar()
    assert calendar is not None and calendar.source.startswith("chinesecalendar")
    service = Service(dev_env.client, settings)
    data = open_case(priority=Priority.NORMAL, policy=settings.case_policy())
    assert data.policy.calendar == calendar
    await service.cases.open(data)
    case = await service.cases.show(data.case_id)
    first_response = calendar.add_business_hours(case.opened_at, timedelta(hours=8))
    assert case.sla[0].name == "first response" and case.sla[0].due_at == first_response
    await service.cases.act(data.case_id, Withdraw(reason="calendar checked", by=AGENT))

    failure = billing_failure()
    await service.collections.report_failure(failure)
    invoice = await service.collections.show(failure.invoice_id)
    assert invoice.next_step_at is not None and calendar.is_open(invoice.next_step_at)
    # the day-0 notice at the next opening; in business hours that is at once, and once it has
    # gone (it may already have) the invoice waits for day 3
    day_0 = calendar.next_opening(invoice.first_failed_at)
    day_3 = calendar.add_business_days(invoice.first_failed_at, 3)
    assert invoice.next_step_at in (day_0, day_3)
    await service.collections.act(failure.invoice_id, Waive(reason="calendar checked", by=AGENT))


async def test_a_suspension_approved_at_night_waits_for_the_next_opening(tmp_path: Path) -> None:
    """The manager may approve at any hour; the customer's account suspends for non-payment
    only on a working day in business hours."""
    steps = [
        s.model_copy(update={"approval": Approval.MANAGER})
        if s.action is CollectionsAction.SUSPEND
        else s
        for s in POLICY.steps
    ]
    policy = POLICY.model_copy(update={"steps": steps})
    async with (
        time_skipping(cst(2026, 3, 2, 10), tmp_path) as env,
        fake_worker(env.client) as fake,
    ):
        failure = billing_failure()
        handle = await env.client.start_workflow(
            CollectionsWorkflow.run,
            StartCollections(failure=failure, policy=policy, case_policy=CASE_POLICY),
            id=f"collections-{failure.invoice_id}",
            task_queue=fake.task_queue,
        )
        await sleep_until(env, cst(2026, 3, 16, 20))  # well past the suspension day, at 20:00
        asked = await handle.query(CollectionsWorkflow.view)
        assert asked.approval_asked_at is not None and not fake.subscription_changes
        await handle.execute_update(
            CollectionsWorkflow.approve_suspension,
            DecideSuspension(reason="批准", by="manager.wang@partner.example.cn"),
        )
        await sleep_until(env, cst(2026, 3, 17, 8, 59))
        assert not fake.subscription_changes  # not at night
        await sleep_until(env, cst(2026, 3, 17, 9, 5))
        await eventually(lambda: len(fake.subscription_changes) == 2)
        suspended = collections_events(fake, EventKind.SUSPENDED)
        assert [minute(e.at) for e in suspended] == [datetime(2026, 3, 17, 9)] * 2
