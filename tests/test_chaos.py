"""Nothing lost: the real worker, as a subprocess, SIGKILLed twice while 10 cases and 10
collections run; every case closes, every invoice is paid, `verify` finds no difference and no
email key went out twice.

The kills come when every workflow has carried out what it had to and waits for the agent or the
customer (asserted, not timed): the new worker must rebuild each one from its history without
repeating an email or a Partner Center call. A kill in the middle of an activity costs the
activity's 60 s timeout (and the email claim's 2 minutes) before the retry: `make chaos` does
that, this test stays fast."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import func, select, update
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from chaos.harness import (
    WorkerProcess,
    chaos_settings,
    check_emails,
    confirm_case,
    open_case,
    pay_in_full,
    report_failure,
    resolve_case,
)
from core.models import CaseStatus, CaseView, CollectionsStatus, CollectionsView, EventKind
from core.settings import Settings
from db.session import make_engine, make_session_factory, one_off_session
from db.tables import Case, Collections, EmailLog
from service.verify import verify
from tests.workflow_support import billing_failure
from tests.workflow_support import open_case as case_data
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

COUNT = 10
HANG_GUARD = 120  # seconds: a stuck run fails instead of hanging the suite


def _emails(view: CaseView | CollectionsView, template: str | None = None) -> int:
    return sum(
        event.kind is EventKind.EMAIL_SENT and template in (None, event.text)
        for event in view.timeline
    )


async def settle(
    client: Client,
    settings: Settings,
    case_ids: list[str],
    invoices: list[str],
    case_ready: CaseStatus | None,
) -> None:
    """Wait until every workflow did its part (cases: acknowledged and the team told, or in
    `case_ready`; collections: the suspension emailed), stored all of it, and no email is
    pending."""
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        while True:
            views: list[CaseView | CollectionsView] = [
                await client.get_workflow_handle_for(
                    BillingCaseWorkflow.run, f"case-{case_id}"
                ).query(BillingCaseWorkflow.view)
                for case_id in case_ids
            ]
            views += [
                await client.get_workflow_handle_for(
                    CollectionsWorkflow.run, f"collections-{invoice}"
                ).query(CollectionsWorkflow.view)
                for invoice in invoices
            ]
            with sessions() as session:
                stored = {
                    workflow_id: seq
                    for table in (Case, Collections)
                    for workflow_id, seq in session.execute(
                        select(table.workflow_id, table.last_event_seq)
                    )
                }
                pending = session.scalar(select(func.count()).where(EmailLog.status == "pending"))
            done = pending == 0 and all(
                stored.get(view.workflow_id) == len(view.timeline)
                and (
                    (view.status is case_ready if case_ready else _emails(view) >= 2)
                    if isinstance(view, CaseView)
                    else _emails(view, "collections_suspended") == 1
                )
                for view in views
            )
            if done:
                return
            await asyncio.sleep(0.2)
    finally:
        engine.dispose()


async def test_worker_killed_twice_loses_nothing(
    dev_env: WorkflowEnvironment, codec_keys: str, tmp_path: Path
) -> None:
    client = dev_env.client
    settings = chaos_settings(tmp_path, f"chaos-{uuid.uuid4()}", codec_keys)
    worker = WorkerProcess(settings, client.service_client.config.target_host, tmp_path / "w.log")
    worker.start()
    try:
        cases = [case_data(owner=None) for _ in range(COUNT)]
        failures = [billing_failure(amount=f"{1000 + n}.50") for n in range(COUNT)]

        async def scenario() -> None:
            case_ids = await asyncio.gather(*(open_case(client, settings, c) for c in cases))
            await asyncio.gather(*(report_failure(client, settings, f) for f in failures))
            invoices = [failure.invoice_id for failure in failures]
            await settle(client, settings, case_ids, invoices, None)
            worker.restart()  # 1: cases acknowledged, subscriptions suspended
            await asyncio.gather(*(resolve_case(client, case_id) for case_id in case_ids))
            await settle(client, settings, case_ids, invoices, CaseStatus.RESOLVED)
            worker.restart()  # 2: customers told the resolution, reopen windows running
            closed = await asyncio.gather(*(confirm_case(client, c) for c in case_ids))
            paid = await asyncio.gather(*(pay_in_full(client, f) for f in failures))
            assert [view.status for view in closed] == [CaseStatus.CLOSED] * COUNT
            assert [view.status for view in paid] == [CollectionsStatus.PAID] * COUNT

        await asyncio.wait_for(scenario(), HANG_GUARD)
        assert worker.kills == 2

        report = await verify(client=client, settings=settings)
        assert (report.cases, report.collections, report.workflows) == (COUNT, COUNT, 2 * COUNT)
        assert report.differences == []

        emails = check_emails(settings)
        # each case: acknowledgement, resolution, closing; each invoice: failure, suspension, paid
        assert emails.sent >= 3 * COUNT + 3 * COUNT
        assert emails.not_sent == 0
        assert emails.files == emails.sent
        assert emails.duplicates == 0

        # verify sees a row at odds with its workflow, and so does the CLI (exit code 1)
        case_workflow = f"case-{cases[0].case_id}"
        with one_off_session(settings.database_url) as session, session.begin():
            session.execute(
                update(Case).where(Case.workflow_id == case_workflow).values(status="open")
            )
        report = await verify(client=client, settings=settings)
        assert [(d.id, d.problem, d.database, d.temporal) for d in report.differences] == [
            (case_workflow, "status", "open", "closed")
        ]
        env = {
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "DATABASE_URL": settings.database_url,
            "TASK_QUEUE": settings.task_queue,
        }
        result = await asyncio.to_thread(CliRunner().invoke, starter.app, ["verify"], env=env)
        assert result.exit_code == 1, result.output
        assert "differences: 1" in result.output and case_workflow in result.output
    finally:
        worker.stop()
