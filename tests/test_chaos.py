"""Nothing lost: 2 real workers and 2 real intake API processes, as subprocesses, each of them
SIGKILLed once while 10 cases and 10 collections run (on PostgreSQL when TEST_DATABASE_URL is
set, in a database `chaos` of its own, else on SQLite); cases are opened, failures reported and
invoices paid through the signed HTTP intake; every case closes, every invoice is paid, `verify`
finds no difference, no email key went out twice and no request opened a second case.

The kills come when every workflow has carried out what it had to and waits for the agent or the
customer (asserted, not timed), and no request is in flight: the new worker must rebuild each one
from its history without repeating an email or a Partner Center call, and a request repeated to
a restarted API process is answered from the database. A kill in the middle of an activity costs
the activity's 60 s timeout (and the email claim's 2 minutes) before the retry, one in the middle
of a request the key's 2-minute claim: `make chaos` does that, this test stays fast."""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

from sqlalchemy import func, make_url, select, update
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from api.signing import sign
from chaos.harness import (
    ApiProcess,
    DatabaseBusy,
    Intake,
    WorkerProcess,
    case_form,
    chaos_settings,
    check_emails,
    confirm_case,
    exclusive_database,
    extra_cases,
    free_port,
    new_key,
    open_case_http,
    pay_in_full,
    report_failure_http,
    resolve_case,
    retry,
    signature,
)
from core.ids import account_workflow_id, case_workflow_id, collections_workflow_id
from core.models import (
    AccountView,
    CaseStatus,
    CaseView,
    CollectionsStatus,
    CollectionsView,
    EmailTemplate,
    EventKind,
)
from core.settings import Settings
from db.session import make_engine, make_session_factory, one_off_session
from db.tables import Account, Case, Collections, EmailLog
from service.verify import verify
from tests.workflow_support import billing_failure
from workflows.account import AccountWorkflow
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow

COUNT = 10
WORKERS = APIS = 2
HANG_GUARD = 120  # seconds: a stuck run fails instead of hanging the suite
LOCK_WAIT = 10.0  # seconds: `make chaos` may hold the chaos database for many minutes


def _emails(view: CaseView | CollectionsView | AccountView, template: str | None = None) -> int:
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
    tenants: Sequence[str] = (),
    told: EmailTemplate | None = None,
) -> None:
    """Wait until every workflow did its part (cases: acknowledged and the team told, or in
    `case_ready`; collections: the suspension emailed; the `tenants`' accounts: every held
    subscription suspended, and `told` sent), stored all of it, and no email is pending."""
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    cases = [
        client.get_workflow_handle_for(BillingCaseWorkflow.run, case_workflow_id(case_id))
        for case_id in case_ids
    ]
    collections = [
        client.get_workflow_handle_for(CollectionsWorkflow.run, collections_workflow_id(invoice))
        for invoice in invoices
    ]
    holders = [
        client.get_workflow_handle_for(AccountWorkflow.run, account_workflow_id(tenant))
        for tenant in tenants
    ]
    try:
        while True:
            # a query fails while its workflow task is retried (a deadlock detected under load)
            held = [await account_view(account) for account in holders]
            views: list[CaseView | CollectionsView] = [
                await retry(partial(case.query, BillingCaseWorkflow.view)) for case in cases
            ]
            views += [
                await retry(partial(invoice.query, CollectionsWorkflow.view))
                for invoice in collections
            ]
            with sessions() as session:
                stored = {
                    workflow_id: seq
                    for table in (Case, Collections, Account)
                    for workflow_id, seq in session.execute(
                        select(table.workflow_id, table.last_event_seq)
                    )
                }
                pending = session.scalar(select(func.count()).where(EmailLog.status == "pending"))
            done = (
                pending == 0
                and all(
                    stored.get(view.workflow_id) == len(view.timeline)
                    and (
                        (view.status is case_ready if case_ready else _emails(view) >= 2)
                        if isinstance(view, CaseView)
                        else _emails(view, "collections_suspended") == 1
                    )
                    for view in views
                )
                and all(
                    account is not None
                    and stored.get(account.workflow_id) == account.event_count
                    and set(account.suspended_subscriptions)
                    == {hold.subscription_id for hold in account.holds}
                    and (told is None or _emails(account, told.value) >= 1)
                    for account in held
                )
            )
            if done:
                return
            await asyncio.sleep(0.2)
    finally:
        engine.dispose()


async def account_view(
    handle: WorkflowHandle[AccountWorkflow, AccountView],
) -> AccountView | None:
    """The account's view; None before its first invoice started it."""
    try:
        return await retry(partial(handle.query, AccountWorkflow.view))
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


def test_the_harness_signs_as_the_api_checks() -> None:
    """chaos signs as a caller, without importing the API: the same signature."""
    body = b'{"invoice_id": "G1"}'
    expected = sign("s" * 20, 1_700_000_000, body, method="POST", path="/v1/payments", key="k-1")
    assert signature("s" * 20, 1_700_000_000, "/v1/payments", "k-1", body) == expected


@contextmanager
def chaos_database() -> Iterator[str | None]:
    """The PostgreSQL database `chaos` beside TEST_DATABASE_URL's (other tests reset that one),
    emptied and held by this test; None (SQLite) without TEST_DATABASE_URL, or with a warning
    when a `make chaos` run holds it."""
    test_url = os.environ.get("TEST_DATABASE_URL")
    if not test_url:
        yield None
        return
    url = make_url(test_url).set(database="chaos").render_as_string(hide_password=False)
    with ExitStack() as stack:
        held: str | None = None
        try:
            held = stack.enter_context(exclusive_database(url, wait=LOCK_WAIT))
        except DatabaseBusy as busy:
            warnings.warn(f"{busy}: the chaos test runs on SQLite", stacklevel=1)
        yield held


def kill(worker: WorkerProcess, api: ApiProcess) -> asyncio.Task[None]:
    """SIGKILL both while no request is in flight: the worker starts again at once, the API
    process in the background (the other one serves meanwhile); the task ends when it listens."""
    worker.restart()
    api.kill()
    return asyncio.create_task(asyncio.to_thread(api.start))


async def test_workers_and_apis_killed_lose_nothing(
    dev_env: WorkflowEnvironment, codec_keys: str, tmp_path: Path
) -> None:
    client = dev_env.client
    address = client.service_client.config.target_host
    with chaos_database() as database_url:
        settings = chaos_settings(tmp_path, f"chaos-{uuid.uuid4()}", codec_keys, database_url)
        workers = [WorkerProcess(settings, address, tmp_path / f"w{n}.log") for n in range(WORKERS)]
        apis = [
            ApiProcess(settings, address, tmp_path / f"api{n}.log", free_port())
            for n in range(APIS)
        ]
        intake = Intake(apis, settings)
        try:
            await asyncio.gather(*(asyncio.to_thread(p.start) for p in [*workers, *apis]))
            run = scenario(client, settings, intake, workers, apis)
            case_ids = await asyncio.wait_for(run, HANG_GUARD)
            await check(client, settings, case_workflow_id(case_ids[0]))
        finally:
            await intake.aclose()
            for process in [*apis, *workers]:
                process.stop()


async def scenario(
    client: Client,
    settings: Settings,
    intake: Intake,
    workers: list[WorkerProcess],
    apis: list[ApiProcess],
) -> list[str]:
    """Open, report, resolve, confirm and pay, with two kills of each kind at quiet points; the
    case ids."""
    forms = [case_form() for _ in range(COUNT)]
    case_keys = [new_key("case") for _ in forms]
    failures = [billing_failure(amount=f"{1000 + n}.50") for n in range(COUNT)]
    case_ids = await asyncio.gather(
        *(open_case_http(intake, form, key) for form, key in zip(forms, case_keys, strict=True))
    )
    await asyncio.gather(
        *(report_failure_http(intake, failure, new_key("failure")) for failure in failures)
    )
    invoices = [failure.invoice_id for failure in failures]
    tenants = [failure.customer.tenant_id for failure in failures]
    await settle(client, settings, case_ids, invoices, None, tenants)
    listening = kill(workers[0], apis[0])  # 1: cases acknowledged, subscriptions suspended
    await asyncio.gather(*(resolve_case(client, case_id) for case_id in case_ids), listening)
    # the same request again, to the new process: the database's first answer, no second case
    async with Intake(apis[:1], settings) as restarted:
        assert await open_case_http(restarted, forms[0], case_keys[0]) == case_ids[0]
    await settle(client, settings, case_ids, invoices, CaseStatus.RESOLVED, tenants)
    listening = kill(
        workers[1], apis[1]
    )  # 2: customers told the resolution, reopen windows running
    closed, paid = await asyncio.gather(
        asyncio.gather(*(confirm_case(client, case_id) for case_id in case_ids)),
        asyncio.gather(
            *(pay_in_full(intake, client, failure, new_key("payment")) for failure in failures)
        ),
    )
    await listening
    assert [view.status for view in closed] == [CaseStatus.CLOSED] * COUNT
    assert [view.status for view in paid] == [CollectionsStatus.PAID] * COUNT
    assert [process.kills for process in [*workers, *apis]] == [1] * (WORKERS + APIS)
    assert intake.refused == []
    assert await extra_cases(client, settings, set(case_ids)) == []
    # the customers' accounts act last: every subscription reactivated, the customer told, and
    # the email recorded, before `check` counts the emails
    await settle(
        client, settings, [], [], None, tenants, told=EmailTemplate.COLLECTIONS_REACTIVATED
    )
    return case_ids


async def check(client: Client, settings: Settings, case_workflow: str) -> None:
    """verify finds nothing, no email went out twice; then it finds `case_workflow`'s row
    changed, and so does the CLI."""
    report = await verify(client=client, settings=settings)
    counts = (report.cases, report.collections, report.accounts, report.workflows)
    assert counts == (COUNT, COUNT, COUNT, 3 * COUNT)
    assert report.differences == []

    emails = check_emails(settings)
    # each case: acknowledgement, resolution, closing; each invoice: failure, suspension, paid
    assert emails.sent >= 3 * COUNT + 3 * COUNT
    assert emails.not_sent == 0
    assert emails.files == emails.sent
    assert emails.duplicates == 0

    # verify sees a row at odds with its workflow, and so does the CLI (exit code 1)
    with one_off_session(settings.database_url) as session, session.begin():
        session.execute(update(Case).where(Case.workflow_id == case_workflow).values(status="open"))
    report = await verify(client=client, settings=settings)
    assert [(d.id, d.problem, d.database, d.temporal) for d in report.differences] == [
        (case_workflow, "status", "open", "closed")
    ]
    env = {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "DATABASE_URL": settings.database_url,
        "TASK_QUEUE": settings.task_queue,
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, starter.app, ["workflow", "verify"], env=env
    )
    assert result.exit_code == 1, result.output
    assert "differences: 1" in result.output and case_workflow in result.output
