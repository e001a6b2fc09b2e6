"""VianetInvoiceWorkflow: the partner's own invoice from 21Vianet, reminded before and on its due
date, raised to a manager the day after, ended by marking it paid. Time-skipping tests with
recorded activities; the store activity on both databases; one run on the real dev server."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from activities.vianet_invoice import VianetInvoiceActivities
from core.formatting import CHINA_STANDARD_TIME as CHINA
from core.models import (
    Attention,
    EmailTemplate,
    EventKind,
    MarkVianetPaid,
    PersistVianetInvoice,
    RecordVianetInvoice,
    VianetInvoiceStatus,
    VianetInvoiceView,
)
from core.settings import Settings
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from db.tables import VianetInvoice
from service import Service
from service.errors import ServiceError
from tests.clock_support import eventually
from tests.codec_support import replay_and_record
from tests.factories import make_vianet_invoice_view
from tests.workflow_support import FakeActivities
from worker import build_worker
from workflows.vianet_invoice import VianetInvoiceWorkflow
from workflows.vianet_invoice.rules import notice_at

FINANCE = "finance@partner.example.cn"
MANAGER = "billing-manager@partner.example.cn"
CLERK = "zhao.min@partner.example.cn"
DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)
Handle = WorkflowHandle[VianetInvoiceWorkflow, VianetInvoiceView]
DUE = EmailTemplate.FINANCE_VIANET_INVOICE_DUE
OVERDUE = EmailTemplate.MANAGER_VIANET_INVOICE_OVERDUE


def invoice(due_date: date, **fields: object) -> RecordVianetInvoice:
    return RecordVianetInvoice.model_validate(
        {
            "invoice_number": f"VN{uuid.uuid4().hex[:10].upper()}",
            "amount": Decimal("1286400.00"),
            "due_date": due_date,
            "recorded_by": CLERK,
            "finance_email": FINANCE,
            "manager_email": MANAGER,
            **fields,
        }
    )


async def today(env: WorkflowEnvironment) -> date:
    return (await env.get_current_time()).astimezone(CHINA).date()


async def record(
    env: WorkflowEnvironment, fake: FakeActivities, data: RecordVianetInvoice
) -> Handle:
    settings = Settings(task_queue=fake.task_queue)
    view = await Service(env.client, settings).vianet_invoices.record(data)
    # as it is when asked: overdue already, if recorded after its due date
    assert view.invoice_number == data.invoice_number
    assert view.status in (VianetInvoiceStatus.UNPAID, VianetInvoiceStatus.OVERDUE)
    await eventually(lambda: bool(fake.vianet_invoices))
    return env.client.get_workflow_handle_for(VianetInvoiceWorkflow.run, view.workflow_id)


async def until(env: WorkflowEnvironment, moment: datetime) -> None:
    now = await env.get_current_time()
    if moment > now:
        await env.sleep(moment - now)


async def completed(handle: Handle) -> bool:
    return (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED


def sent(fake: FakeActivities) -> list[tuple[EmailTemplate, str, dict[str, str]]]:
    return [(e.template, str(e.to), e.data.extra()) for e in fake.emails]


async def pay(env: WorkflowEnvironment, data: RecordVianetInvoice) -> VianetInvoiceView:
    paid = MarkVianetPaid(
        paid_at=await env.get_current_time(), reference="CMB-20261205-0001", by=CLERK
    )
    return await Service(env.client).vianet_invoices.mark_paid(data.invoice_number, paid)


async def test_reminders_before_and_on_the_day_then_a_manager(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    data = invoice(await today(time_env) + 10 * DAY)
    handle = await record(time_env, fake, data)
    due = data.due_date

    await until(time_env, notice_at(due - 3 * DAY) - MINUTE)
    assert fake.emails == []
    await until(time_env, notice_at(due - 3 * DAY) + MINUTE)
    await eventually(lambda: len(fake.emails) == 1)
    assert sent(fake) == [(DUE, FINANCE, {"days_left": "3"})]
    about = fake.emails[0].vianet_invoice
    assert about is not None and about.invoice_number == data.invoice_number

    await until(time_env, notice_at(due) - MINUTE)
    assert len(fake.emails) == 1
    await until(time_env, notice_at(due) + MINUTE)
    await eventually(lambda: len(fake.emails) == 2)
    assert sent(fake)[1] == (DUE, FINANCE, {"days_left": "0"})

    await until(time_env, notice_at(due + DAY) - MINUTE)
    assert len(fake.emails) == 2
    assert (await handle.query(VianetInvoiceWorkflow.view)).status is VianetInvoiceStatus.UNPAID
    await until(time_env, notice_at(due + DAY) + MINUTE)
    await eventually(lambda: len(fake.emails) == 3)
    assert sent(fake)[2] == (OVERDUE, MANAGER, {"days_overdue": "1"})
    overdue = await handle.query(VianetInvoiceWorkflow.view)
    assert overdue.status is VianetInvoiceStatus.OVERDUE
    assert (overdue.reminders_sent, overdue.next_reminder) == (2, None)
    assert overdue.escalated_at is not None
    assert overdue.attention is Attention.PAYABLE_OVERDUE
    await eventually(lambda: fake.vianet_invoices[-1].view.status is VianetInvoiceStatus.OVERDUE)

    await until(time_env, notice_at(due + 30 * DAY))
    assert len(fake.emails) == 3  # raised once, not every day

    paid = await pay(time_env, data)
    assert paid.status is VianetInvoiceStatus.PAID
    assert paid.paid_reference == "CMB-20261205-0001"
    await eventually(lambda: completed(handle))
    result = await handle.result()
    assert result.status is VianetInvoiceStatus.PAID
    assert [e.kind for e in result.timeline if e.kind is not EventKind.EMAIL_SENT] == [
        EventKind.VIANET_INVOICE_RECORDED,
        EventKind.REMINDER,
        EventKind.REMINDER,
        EventKind.VIANET_INVOICE_OVERDUE,
        EventKind.NEEDS_ATTENTION,  # in 需要处理 until paid
        EventKind.VIANET_INVOICE_PAID,
    ]
    stored = fake.vianet_invoices[-1]
    assert stored.view.status is VianetInvoiceStatus.PAID
    assert stored.seq == len(result.timeline)
    assert [p.seq for p in fake.vianet_invoices] == sorted(p.seq for p in fake.vianet_invoices)


async def test_paid_before_the_due_date_stops_the_reminders(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    data = invoice(await today(time_env) + 10 * DAY, remind_days_before=5)
    handle = await record(time_env, fake, data)
    await until(time_env, notice_at(data.due_date - 5 * DAY) + MINUTE)
    await eventually(lambda: len(fake.emails) == 1)
    assert sent(fake) == [(DUE, FINANCE, {"days_left": "5"})]

    await pay(time_env, data)
    await eventually(lambda: completed(handle))
    assert (await handle.result()).reminders_sent == 1
    await until(time_env, notice_at(data.due_date + 10 * DAY))
    assert len(fake.emails) == 1


async def test_paid_before_any_reminder_sends_nothing(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    data = invoice(await today(time_env) + 20 * DAY)
    handle = await record(time_env, fake, data)
    await pay(time_env, data)
    await eventually(lambda: completed(handle))
    await eventually(lambda: fake.vianet_invoices[-1].view.status is VianetInvoiceStatus.PAID)
    assert fake.emails == []


async def test_recorded_after_the_due_date_goes_straight_to_a_manager(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    data = invoice(await today(time_env) - 2 * DAY)
    handle = await record(time_env, fake, data)
    await eventually(lambda: len(fake.emails) == 1)
    # one notice that fits today, not the reminders it missed
    assert sent(fake) == [(OVERDUE, MANAGER, {"days_overdue": "2"})]
    assert (await handle.query(VianetInvoiceWorkflow.view)).status is VianetInvoiceStatus.OVERDUE


async def test_recorded_inside_the_reminder_window_reminds_at_once(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    data = invoice(await today(time_env) + DAY)
    await record(time_env, fake, data)
    await eventually(lambda: len(fake.emails) == 1)
    assert sent(fake) == [(DUE, FINANCE, {"days_left": "1"})]


async def test_refusals_name_the_problem_and_change_nothing(
    time_env: WorkflowEnvironment, fake: FakeActivities
) -> None:
    data = invoice(await today(time_env) + 10 * DAY)
    handle = await record(time_env, fake, data)
    before = await handle.query(VianetInvoiceWorkflow.view)
    future = MarkVianetPaid(
        paid_at=await time_env.get_current_time() + DAY, reference="CMB-1", by=CLERK
    )
    with pytest.raises(ServiceError, match=r"paid_at: .* is in the future"):
        await Service(time_env.client).vianet_invoices.mark_paid(data.invoice_number, future)
    assert await handle.query(VianetInvoiceWorkflow.view) == before

    settings = Settings(task_queue=fake.task_queue)
    with pytest.raises(ServiceError, match="already recorded"):
        await Service(time_env.client, settings).vianet_invoices.record(data)
    with pytest.raises(ServiceError, match="no 21Vianet invoice VN-NONE"):
        await Service(time_env.client).vianet_invoices.mark_paid("VN-NONE", future)

    await pay(time_env, data)
    await eventually(lambda: completed(handle))
    with pytest.raises(ServiceError, match="already marked paid"):
        await pay(time_env, data)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"currency": "USD"}, "currency"),
        ({"amount": Decimal("0")}, "amount"),
        ({"amount": Decimal("1.005")}, "amount"),
        ({"invoice_number": "VN 1"}, "invoice_number"),
        ({"remind_days_before": 0}, "remind_days_before"),
        ({"finance_email": "finance"}, "finance_email"),
    ],
)
def test_bad_invoices_are_refused_by_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        invoice(date(2026, 12, 1), **fields)
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


def test_a_payment_time_needs_a_timezone() -> None:
    with pytest.raises(ValidationError, match="paid_at"):
        MarkVianetPaid(paid_at=datetime(2026, 12, 1, 10, 0), reference="CMB-1", by=CLERK)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["vianet", "record", "VN1", "--amount", "0", "--due-date", "2026-12-01"], "amount"),
        (["vianet", "record", "VN1", "--amount", "10", "--due-date", "2026-13-01"], "due_date"),
        (
            [
                *("vianet", "record", "VN1", "--amount", "10", "--due-date", "2026-12-01"),
                *("--currency", "USD"),
            ],
            "currency",
        ),
        (
            ["vianet", "pay", "VN1", "--reference", "CMB-1", "--paid-at", "2026-12-01T10:00"],
            "paid_at",
        ),
        (["vianet", "pay", "VN1", "--reference", " "], "reference"),
    ],
)
def test_cli_refuses_bad_input_before_calling_temporal(args: list[str], field: str) -> None:
    result = CliRunner().invoke(starter.app, args, env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert result.exit_code == 2, result.output
    assert f"{field}:" in result.output


# --------------------------------------------------------------------------- the store


def _stored(sessions: sessionmaker[Session], number: str) -> VianetInvoice:
    with sessions() as session:
        row = session.get(VianetInvoice, number)
        assert row is not None
        return row


def test_persist_is_idempotent_and_never_goes_back(
    session_factory: sessionmaker[Session],
) -> None:
    store = VianetInvoiceActivities(session_factory)
    unpaid = make_vianet_invoice_view()
    paid = unpaid.model_copy(
        update={
            "status": VianetInvoiceStatus.PAID,
            "paid_at": datetime(2025, 3, 24, 6, 0, tzinfo=UTC),
            "paid_reference": "CMB-20250324-0001",
            "paid_by": CLERK,
        }
    )
    store.persist_vianet_invoice(PersistVianetInvoice(view=unpaid, seq=3))
    store.persist_vianet_invoice(PersistVianetInvoice(view=unpaid, seq=3))
    row = _stored(session_factory, unpaid.invoice_number)
    assert (row.status, row.amount, row.due_date) == (
        "unpaid",
        Decimal("1286400.00"),
        unpaid.due_date,
    )
    store.persist_vianet_invoice(PersistVianetInvoice(view=paid, seq=5))
    store.persist_vianet_invoice(PersistVianetInvoice(view=unpaid, seq=3))  # a late retry
    row = _stored(session_factory, unpaid.invoice_number)
    assert (row.status, row.paid_reference, row.last_event_seq) == ("paid", "CMB-20250324-0001", 5)
    assert row.paid_at == paid.paid_at
    with session_factory() as session:
        assert session.query(VianetInvoice).count() == 1


# --------------------------------------------------------------------------- real server


async def test_on_the_real_server(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Real worker, SQLite and outbox: an invoice recorded after its due date reaches the
    manager's mailbox and the table; marking it paid closes it there too."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        task_queue=f"vianet-{uuid.uuid4()}",
    )
    upgrade(settings.database_url)
    sessions = make_session_factory(make_engine(settings.database_url))
    data = invoice(datetime.now(CHINA).date() - 3 * DAY)
    client = dev_env.client
    async with build_worker(client, settings):
        await Service(client, settings).vianet_invoices.record(data)

        def overdue() -> bool:
            with sessions() as session:
                row = session.get(VianetInvoice, data.invoice_number)
                return row is not None and row.status == "overdue"

        await eventually(overdue)
        await eventually(lambda: len(list(settings.outbox_dir.glob("*.eml"))) == 1)
        [path] = settings.outbox_dir.glob("*.eml")
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message["To"] == MANAGER
        assert data.invoice_number in str(message["Subject"])

        paid = MarkVianetPaid(paid_at=datetime.now(UTC), reference="CMB-20261124-7", by=CLERK)
        await Service(client).vianet_invoices.mark_paid(data.invoice_number, paid)
        handle = client.get_workflow_handle_for(
            VianetInvoiceWorkflow.run, f"vianet-invoice-{data.invoice_number}"
        )
        assert (await handle.result()).status is VianetInvoiceStatus.PAID
        row = _stored(sessions, data.invoice_number)
        assert (row.status, row.paid_reference) == ("paid", "CMB-20261124-7")
    await replay_and_record(client, await handle.fetch_history(), "vianet_invoice_overdue_paid")
