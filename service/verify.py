"""`starter.py workflow verify`: the database and Temporal tell the same story, no email stuck.

For every case, collections and account row: its workflow exists; a completed workflow's final
status and event count are the row's; a running one is never behind the row (the row may lag a
running workflow that is still persisting, never lead it). Every BillingCaseWorkflow,
CollectionsWorkflow and AccountWorkflow on the task queue has its row (one started in the last
`STUCK_AFTER` may not have stored it yet). An email_log row still 'pending' after `STUCK_AFTER`
is reported: its email may never have gone out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from pydantic import BaseModel
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from core import search
from core.models import AccountView, CaseView, CollectionsView
from core.settings import Settings
from db.session import one_off_session
from db.tables import Account, Case, Collections, EmailLog

STUCK_AFTER = timedelta(minutes=5)
CONCURRENCY = 20
TYPES = {
    "BillingCaseWorkflow": "case",
    "CollectionsWorkflow": "collections",
    "AccountWorkflow": "account",
}
VIEWS: dict[str, type[BaseModel]] = {
    "case": CaseView,
    "collections": CollectionsView,
    "account": AccountView,
}
# an account runs as long as its customer: its row has no status (it holds, or it does not)
ACCOUNT_STATUS = "open"


@dataclass(frozen=True)
class Difference:
    """One disagreement: what the database says against what Temporal says."""

    kind: str  # case | collections | account | email
    id: str  # the workflow id, or the email's dedup key
    problem: str
    database: str
    temporal: str


@dataclass
class VerifyReport:
    cases: int = 0
    collections: int = 0
    accounts: int = 0
    workflows: int = 0  # of the three types on the task queue
    running: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class _Row:
    kind: str
    workflow_id: str
    status: str
    last_event_seq: int


def _load_rows(settings: Settings, now: datetime) -> tuple[list[_Row], list[EmailLog]]:
    with one_off_session(settings.database_url) as session:
        rows = [
            _Row("case", c.workflow_id, c.status, c.last_event_seq)
            for c in session.scalars(select(Case))
        ]
        rows += [
            _Row("collections", c.workflow_id, c.status, c.last_event_seq)
            for c in session.scalars(select(Collections))
        ]
        rows += [
            _Row("account", a.workflow_id, ACCOUNT_STATUS, a.last_event_seq)
            for a in session.scalars(select(Account))
        ]
        stuck = list(
            session.scalars(
                select(EmailLog)
                .where(EmailLog.status == "pending", EmailLog.created_at < now - STUCK_AFTER)
                .order_by(EmailLog.created_at)
            )
        )
        session.expunge_all()
    return rows, stuck


def events(view: CaseView | CollectionsView | AccountView) -> int:
    """How many events the workflow recorded (a result from before the count: its timeline)."""
    return view.event_count or len(view.timeline)


async def _check_row(client: Client, row: _Row) -> list[Difference]:
    def diff(problem: str, database: str, temporal: str) -> list[Difference]:
        return [Difference(row.kind, row.workflow_id, problem, database, temporal)]

    view_type = VIEWS[row.kind]
    handle = client.get_workflow_handle(row.workflow_id, result_type=view_type)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return diff("no workflow", row.status, "-")
        raise
    status = described.status
    if status is WorkflowExecutionStatus.COMPLETED:
        view = await handle.result()
        assert isinstance(view, CaseView | CollectionsView | AccountView)
        status_value = view.status.value if not isinstance(view, AccountView) else ACCOUNT_STATUS
        if status_value != row.status:
            return diff("status", row.status, status_value)
        if row.last_event_seq != events(view):
            return diff("events stored", f"seq {row.last_event_seq}", f"{events(view)} events")
        return []
    if status is WorkflowExecutionStatus.RUNNING:
        try:
            view = await handle.query("view", result_type=view_type)
        except RPCError as err:
            if err.status is not RPCStatusCode.FAILED_PRECONDITION:
                raise
            # no worker polls its task queue (Temporal: "no poller seen"): it cannot be read now
            return diff("no worker answered its query", f"seq {row.last_event_seq}", "running")
        assert isinstance(view, CaseView | CollectionsView | AccountView)
        if row.last_event_seq > events(view):
            return diff(
                "row ahead of workflow", f"seq {row.last_event_seq}", f"{events(view)} events"
            )
        return []
    name = status.name.lower() if status else "unknown"
    return diff("workflow did not complete", row.status, name)


async def _gather(calls: list[Callable[[], Awaitable[list[Difference]]]]) -> list[Difference]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Callable[[], Awaitable[list[Difference]]]) -> list[Difference]:
        async with limit:
            return await call()

    found = await asyncio.gather(*(one(call) for call in calls))
    return [difference for part in found for difference in part]


async def verify(
    *, client: Client, settings: Settings, now: datetime | None = None
) -> VerifyReport:
    """Compare the database of `settings` with the workflows on its task queue."""
    now = now or datetime.now(UTC)
    rows, stuck = await asyncio.to_thread(_load_rows, settings, now)
    report = VerifyReport(
        cases=sum(row.kind == "case" for row in rows),
        collections=sum(row.kind == "collections" for row in rows),
        accounts=sum(row.kind == "account" for row in rows),
    )
    report.differences += await _gather([partial(_check_row, client, row) for row in rows])

    known = {row.workflow_id for row in rows}
    types = " OR ".join(f"WorkflowType = '{name}'" for name in TYPES)
    query = f"{search.on_task_queues(settings.task_queues())} AND ({types})"
    async for execution in client.list_workflows(query):
        report.workflows += 1
        running = execution.status is WorkflowExecutionStatus.RUNNING
        report.running += running
        # a workflow just started may not have stored its first state yet
        starting = running and execution.start_time > now - STUCK_AFTER
        if execution.id not in known and not starting:
            status = execution.status.name.lower() if execution.status else "unknown"
            report.differences.append(
                Difference(TYPES[execution.workflow_type], execution.id, "no row", "-", status)
            )
    for email in stuck:
        report.differences.append(
            Difference(
                "email",
                email.dedup_key,
                f"pending for more than {STUCK_AFTER.total_seconds() / 60:.0f} min",
                f"pending since {email.created_at:%Y-%m-%d %H:%M} UTC",
                "-",
            )
        )
    report.differences.sort(key=lambda d: (d.kind, d.id))
    return report
