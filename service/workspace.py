"""What the workspace's pages read from the database projection (no Temporal round trip): the
case queues, a case as its workflow last saved it, the invoices in collections, the 21Vianet
payables and a case's email thread."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from temporalio.client import WorkflowExecution

from core import ids, search
from core.alerts import workspace_page
from core.models import (
    About,
    Attention,
    CaseEvent,
    CasePolicy,
    CaseStatus,
    CaseView,
    Category,
    CollectionsStatus,
    EventKind,
    Priority,
)
from core.settings import Settings
from db.tables import (
    Account,
    Case,
    CaseEventRow,
    Collections,
    EmailLog,
    Fapiao,
    VianetEscalation,
    VianetInvoice,
)
from service.calls import reading
from workflows.base import TAIL_EVENTS, cut

T = TypeVar("T")
PAGE_SIZE = 25
OPEN_STATUSES = [status.value for status in CaseStatus if not status.is_final]
OPEN_COLLECTIONS = [status.value for status in CollectionsStatus if not status.is_final]
# a case is "at risk" once this share of its priority's resolution target has passed since it was
# opened (calendar time: the projection has no business-hours clock; the case page shows the
# workflow's own clocks)
AT_RISK_SHARE = 0.75


class Queue(StrEnum):
    MINE = "mine"
    UNASSIGNED = "unassigned"
    SLA = "sla"  # SLA at risk or breached
    WAITING_ON_CUSTOMER = "waiting-on-customer"
    WAITING_ON_VIANET = "waiting-on-21vianet"
    NEEDS_ATTENTION = "needs-attention"


@dataclass(frozen=True)
class CaseFilter:
    priority: Priority | None = None
    category: Category | None = None
    text: str = ""  # a case id, invoice id or part of the customer's name


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    workflow_id: str
    customer_name: str
    category: str
    priority: str
    status: str
    owner: str | None
    opened_at: datetime
    sla_breached: bool
    disputed_amount: Decimal
    currency: str


@dataclass(frozen=True)
class Waiting:
    """One workflow of 需要处理: what it is about, why it waits for a person, and the workspace
    page where that person acts."""

    about: About
    key: str  # the case id, invoice id, tenant id or 21Vianet invoice number
    customer_name: str  # "" for a 21Vianet invoice (the partner's own), or one not projected yet
    reason: Attention
    link: str


# what each workflow id names, and where the projection keeps its customer
_SUBJECTS: tuple[tuple[str, About, Any], ...] = (
    (ids.CASE, About.CASE, Case),
    (ids.COLLECTIONS, About.COLLECTIONS, Collections),
    (ids.ACCOUNT, About.ACCOUNT, Account),
    (ids.VIANET_INVOICE, About.VIANET_INVOICE, None),
)


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    total: int
    page: int  # 1-based

    @property
    def pages(self) -> int:
        return _pages(self.total)


def _pages(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


@dataclass(frozen=True)
class ThreadEmail:
    """One email of a case's thread, as the email log has it."""

    at: datetime
    template: str
    to_address: str
    subject: str
    status: str
    delivery: str | None


def text_match(columns: list[Any], text: str) -> ColumnElement[bool]:
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(*(column.ilike(pattern, escape="\\") for column in columns))


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _queue_condition(
        self,
        queue: Queue,
        me: str,
        now: datetime,
        policy: CasePolicy,
        attention: list[str],
    ) -> ColumnElement[bool]:
        match queue:
            case Queue.MINE:
                return Case.owner == me
            case Queue.UNASSIGNED:
                return Case.owner.is_(None)
            case Queue.SLA:
                at_risk = [
                    and_(
                        Case.priority == priority.value,
                        Case.opened_at < now - targets.resolution * AT_RISK_SHARE,
                    )
                    for priority, targets in policy.sla.items()
                ]
                return or_(Case.sla_breached.is_(True), *at_risk)
            case Queue.WAITING_ON_CUSTOMER:
                return Case.status == CaseStatus.WAITING_ON_CUSTOMER.value
            case Queue.WAITING_ON_VIANET:
                return Case.status.in_(
                    [CaseStatus.ESCALATION_PENDING.value, CaseStatus.WAITING_ON_VIANET.value]
                )
            case Queue.NEEDS_ATTENTION:
                return Case.workflow_id.in_(attention) if attention else false()

    async def cases(
        self,
        queue: Queue,
        me: str,
        found: CaseFilter,
        page: int,
        *,
        now: datetime,
        attention: list[str] | None = None,
    ) -> Page[CaseRow]:
        """One page of a queue's open cases, newest first. `attention`: the workflow ids that
        need a person (Temporal's NeedsAttention: the projection does not keep it)."""
        policy = self._settings.case_policy()
        condition = and_(
            Case.status.in_(OPEN_STATUSES),
            self._queue_condition(queue, me, now, policy, attention or []),
        )
        if found.priority:
            condition = and_(condition, Case.priority == found.priority.value)
        if found.category:
            condition = and_(condition, Case.category == found.category.value)
        if found.text:
            columns = [Case.case_id, Case.invoice_id, Case.customer_name]
            condition = and_(condition, text_match(columns, found.text))
        query = select(Case).where(condition).order_by(Case.opened_at.desc(), Case.case_id)
        return await asyncio.to_thread(self._page, query, condition, page, case_row)

    async def waiting(self, found: list[WorkflowExecution], text: str = "") -> list[Waiting]:
        """The workflows Temporal lists as waiting for a person (NeedsAttention), each with its
        reason, its customer (from the projection) and its page; `text` keeps those whose id or
        customer's name has it. In Temporal's order (the newest first)."""
        subjects: list[tuple[WorkflowExecution, About, str, Any]] = []
        for execution in found:
            for prefix, about, model in _SUBJECTS:
                if execution.id.startswith(prefix):
                    subjects.append((execution, about, execution.id.removeprefix(prefix), model))
                    break
        names = await asyncio.to_thread(self._customer_names, subjects)
        rows = []
        for execution, about, key, _ in subjects:
            shown = execution.typed_search_attributes.get(search.NEEDS_ATTENTION)
            try:
                reason = Attention(shown) if shown else Attention.STALLED
            except ValueError:  # a value of a newer build: it waits all the same
                reason = Attention.STALLED
            name = names.get(execution.id, "")
            if text and text.lower() not in f"{key} {name}".lower():
                continue
            rows.append(Waiting(about, key, name, reason, workspace_page(about, key)))
        return rows

    def _customer_names(
        self, subjects: list[tuple[WorkflowExecution, About, str, Any]]
    ) -> dict[str, str]:
        names: dict[str, str] = {}
        with reading(self._settings.database_url) as session:
            for _prefix, _about, model in _SUBJECTS:
                wanted = [e.id for e, _, _, m in subjects if m is model and model is not None]
                if wanted:
                    query = select(model.workflow_id, model.customer_name).where(
                        model.workflow_id.in_(wanted)
                    )
                    names.update((row[0], row[1]) for row in session.execute(query))
        return names

    async def case(self, case_id: str) -> CaseView | None:
        """The case as its workflow last saved it (its row, its latest events, the whole texts the
        view cuts), or None where no view is stored (not saved yet, or by an older build): read
        from the database, so a case's page never waits on a worker."""
        return await asyncio.to_thread(self._case, case_id)

    def _case(self, case_id: str) -> CaseView | None:
        with reading(self._settings.database_url) as session:
            row = session.get(Case, case_id)
            if row is None or row.view is None:
                return None
            view = CaseView.model_validate(row.view)
            events = session.scalars(
                select(CaseEventRow)
                .where(CaseEventRow.case_id == case_id)
                .order_by(CaseEventRow.seq.desc())
                .limit(TAIL_EVENTS)
            ).all()
            stored = {
                e.escalation_no: e
                for e in session.scalars(
                    select(VianetEscalation).where(VianetEscalation.case_id == case_id)
                )
            }
        escalations = [
            e
            if (full := stored.get(n)) is None
            else e.model_copy(
                update={
                    "reason": _whole(e.reason, full.reason),
                    # rendered and stored before the workflow saves its view again (`escalate`
                    # answers once it is rendered, and the emails about it come first)
                    "request_title": e.request_title or full.request_title,
                    "request_body": _whole(e.request_body, full.request_body)
                    if e.request_body
                    else full.request_body,
                    "response": e.response and _whole(e.response, full.response or ""),
                }
            )
            for n, e in enumerate(view.escalations, 1)
        ]
        details = view.details.model_copy(
            update={"description": _whole(view.details.description, row.description)}
        )
        timeline = [
            CaseEvent(seq=e.seq, at=e.at, kind=e.kind, actor=e.actor, text=cut(e.text), data=e.data)
            for e in reversed(events)
        ]
        return view.model_copy(
            update={
                "details": details,
                "escalations": escalations,
                "event_count": max(view.event_count, row.last_event_seq),
                "timeline": timeline,
            }
        )

    async def collections(self, text: str, page: int) -> Page[Collections]:
        """One page of the invoices in collections (not yet ended), the oldest failure first."""
        condition: ColumnElement[bool] = Collections.status.in_(OPEN_COLLECTIONS)
        if text:
            columns = [Collections.invoice_id, Collections.customer_name]
            condition = and_(condition, text_match(columns, text))
        query = select(Collections).where(condition)
        query = query.order_by(Collections.first_failed_at, Collections.invoice_id)
        return await asyncio.to_thread(self._page, query, condition, page, lambda row: row)

    async def payables(self, page: int) -> Page[VianetInvoice]:
        """The partner's 21Vianet invoices: unpaid ones first, by due date."""
        paid = VianetInvoice.status == "paid"
        query = select(VianetInvoice).order_by(
            paid, VianetInvoice.due_date, VianetInvoice.invoice_number
        )
        return await asyncio.to_thread(self._page, query, None, page, lambda row: row)

    async def fapiao_tasks(self) -> list[Case]:
        """The cases waiting for finance's fapiao (or the buyer's confirmation), oldest first."""
        query = (
            select(Case)
            .where(Case.fapiao_task.is_not(None))
            .order_by(Case.updated_at, Case.case_id)
            .limit(200)
        )
        return await asyncio.to_thread(self._rows, query)

    async def fapiao_recorded(self, limit: int = 50) -> list[Fapiao]:
        """The fapiao recorded last, the newest first."""
        query = select(Fapiao).order_by(Fapiao.created_at.desc(), Fapiao.number).limit(limit)
        return await asyncio.to_thread(self._rows, query)

    def _rows(self, query: Select[Any]) -> list[Any]:
        with reading(self._settings.database_url) as session:
            return list(session.scalars(query).all())

    async def thread(self, case_id: str) -> list[ThreadEmail]:
        """The emails of a case, oldest first (their text is in the outbox or SendGrid)."""
        return await asyncio.to_thread(self._thread, case_id)

    async def timeline(self, case_id: str, limit: int = 200) -> list[CaseEvent]:
        """A case's stored timeline, oldest first, its latest `limit` events (a duplicate's, shown
        on the case it merged into)."""
        return await asyncio.to_thread(self._timeline, case_id, limit)

    def _timeline(self, case_id: str, limit: int) -> list[CaseEvent]:
        with reading(self._settings.database_url) as session:
            rows = session.scalars(
                select(CaseEventRow)
                .where(CaseEventRow.case_id == case_id)
                .order_by(CaseEventRow.seq.desc())
                .limit(limit)
            ).all()
            return [
                CaseEvent(
                    seq=row.seq,
                    at=row.at,
                    kind=EventKind(row.kind),
                    actor=row.actor,
                    text=row.text,
                    data=dict(row.data or {}),
                )
                for row in reversed(rows)
            ]

    async def latest_emails(self, subject_ids: list[str], limit: int = 50) -> list[ThreadEmail]:
        """Our latest emails about these cases and invoices, the newest first."""
        if not subject_ids:
            return []
        query = (
            select(EmailLog)
            .where(EmailLog.case_id.in_(subject_ids))
            .order_by(EmailLog.id.desc())
            .limit(limit)
        )
        return await asyncio.to_thread(self._emails, query)

    def _thread(self, case_id: str) -> list[ThreadEmail]:
        return self._emails(
            select(EmailLog).where(EmailLog.case_id == case_id).order_by(EmailLog.id)
        )

    def _emails(self, query: Select[Any]) -> list[ThreadEmail]:
        with reading(self._settings.database_url) as session:
            return [
                ThreadEmail(
                    row.sent_at or row.created_at,
                    row.template,
                    row.to_address,
                    row.subject,
                    row.status,
                    row.delivery,
                )
                for row in session.scalars(query)
            ]

    def _page(
        self,
        query: Select[Any],
        condition: ColumnElement[bool] | None,
        page: int,
        convert: Any,
    ) -> Page[Any]:
        model = query.column_descriptions[0]["entity"]
        counting = select(func.count()).select_from(model)
        if condition is not None:
            counting = counting.where(condition)
        with reading(self._settings.database_url) as session:
            total = session.scalar(counting) or 0
            page = min(max(1, page), _pages(total))  # past the end: the last page (and no overflow)
            rows = session.scalars(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
            return Page([convert(row) for row in rows], total, page)


def _whole(shown: str, stored: str) -> str:
    """A text as the database has it in full where the view has it cut (`workflows.base.cut`)."""
    if shown.endswith("…") and stored.startswith(shown[:-1]):
        return stored
    return shown


def case_row(row: Case) -> CaseRow:
    return CaseRow(
        row.case_id,
        row.workflow_id,
        row.customer_name,
        row.category,
        row.priority,
        row.status,
        row.owner,
        row.opened_at,
        row.sla_breached,
        row.disputed_amount,
        row.currency,
    )


__all__ = [
    "PAGE_SIZE",
    "CaseFilter",
    "CaseRow",
    "Page",
    "Queue",
    "ThreadEmail",
    "Waiting",
    "Workspace",
    "case_row",
    "text_match",
]
