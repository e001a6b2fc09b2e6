"""The application core: the one place that talks to Temporal as a client.

The CLI (`starter.py`), the HTTP API, the benchmarks, the chaos run and the tests all act through a
`Service`: cases (open, act, show), invoices in collections (a failure starts or joins, act, show),
21Vianet invoices (record, mark paid, show), the managers' lists, bulk imports and the check that
the database and Temporal agree. Failures come back as the typed errors of `service.errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError, RPCStatusCode

from core import search
from core.metrics import IMPORT_LINES, IMPORT_RESULTS
from core.models import About, BillingFailure, HandleAttention, RetryStep, SkipStep, StepAnswer
from core.pace import Pace
from core.settings import Settings, load_settings
from db.session import one_off_session
from intake.bulk import ImportSummary, LineRejected, run_import
from intake.failure_file import FileFormat
from reporting.queries import Report, build_report
from service import accounts, cases, collections, vianet_invoices
from service.accounts import Accounts
from service.attachments import Attachments
from service.calls import Named, attempt, client_for
from service.cases import Cases
from service.collections import Collections, Known, Started
from service.customers import Customers
from service.email_events import EmailEvents
from service.errors import Refused, ServiceError, Unavailable
from service.fapiao import Fapiaos
from service.inbound import Inbound
from service.inbox import Inbox
from service.ledger import Ledger
from service.links import Links
from service.macros import Macros
from service.ratings import Ratings
from service.replies import Replies
from service.statements import Statements
from service.users import Users
from service.verify import VerifyReport, verify
from service.vianet_invoices import VianetInvoices
from service.workspace import Workspace


class Kind(StrEnum):
    """What an operator names a workflow by."""

    CASE = "case"  # by case id
    INVOICE = "invoice"  # an invoice in collections, by invoice id
    VIANET_INVOICE = "vianet-invoice"  # a 21Vianet invoice, by its number
    ACCOUNT = "account"  # a customer's account, by tenant id


# what a staff email, an alert or the 需要处理 queue is about, as an operator names it
KIND_OF: dict[About, Kind] = {
    About.CASE: Kind.CASE,
    About.COLLECTIONS: Kind.INVOICE,
    About.VIANET_INVOICE: Kind.VIANET_INVOICE,
    About.ACCOUNT: Kind.ACCOUNT,
}

NAMED: dict[Kind, Callable[[str], Named]] = {
    Kind.CASE: cases.named,
    Kind.INVOICE: collections.named,
    Kind.VIANET_INVOICE: vianet_invoices.named,
    Kind.ACCOUNT: accounts.named,
}


class Service:
    def __init__(self, client: Client, settings: Settings | None = None) -> None:
        self.client = client
        self.settings = settings = settings or load_settings()
        self.cases = Cases(client, settings)
        self.fapiao = Fapiaos(settings, self.cases)
        self.cases.before_resolve = self.fapiao.with_fapiao
        self.collections = Collections(client, settings)
        self.accounts = Accounts(client, settings)
        self.ledger = Ledger(client, settings)
        self.vianet_invoices = VianetInvoices(client, settings)
        self.ratings = Ratings(settings)
        self.attachments = Attachments(settings)
        self.macros = Macros(settings)
        self.replies = Replies(self.cases, self.attachments)
        self.inbound = Inbound(
            client, settings, self.cases, self.collections, self.ratings, self.attachments
        )
        self.email_events = EmailEvents(client, settings)
        self.users = Users(settings)
        self.workspace = Workspace(settings)
        self.customers = Customers(settings)
        self.inbox = Inbox(settings, self.cases, self.attachments)
        self.statements = Statements(settings, self.collections)
        self.links = Links(settings, self.cases)

    @classmethod
    async def connect(cls, settings: Settings) -> Service:
        """Unavailable when Temporal does not answer."""
        return cls(await client_for(settings), settings)

    async def list_workflows(self, name_or_query: str, limit: int = 50) -> list[WorkflowExecution]:
        """The workflows a saved query (by name, see `search.SAVED_QUERIES`) or a raw filter
        finds, newest first, as the UI's workflow list shows them."""
        try:
            query = search.resolve_query(name_or_query)
        except ValueError as err:
            raise Refused(str(err)) from None
        try:
            return [found async for found in self.client.list_workflows(query, limit=limit)]
        except RPCError as err:
            if err.status is RPCStatusCode.INVALID_ARGUMENT:
                raise Refused(f"Temporal refused the filter {query!r}: {err.message}") from None
            raise Unavailable(f"Temporal is unavailable: {err.message}") from None

    async def retry_step(self, kind: Kind, key: str, data: RetryStep) -> StepAnswer:
        """Run a workflow's failed step again, once its cause is fixed."""
        return await self._decide(kind, key, "retry_step", data)

    async def skip_step(self, kind: Kind, key: str, data: SkipStep) -> StepAnswer:
        """Give a workflow's failed step up; the workflow goes on without it."""
        return await self._decide(kind, key, "skip_step", data)

    async def clear_attention(self, kind: Kind, key: str, data: HandleAttention) -> StepAnswer:
        """A person saw to what a workflow's flag asked: it leaves 需要处理 (unless the workflow
        still waits for something else, which it then says)."""
        return await self._decide(kind, key, "clear_attention", data)

    async def _decide(
        self, kind: Kind, key: str, update: str, data: RetryStep | SkipStep | HandleAttention
    ) -> StepAnswer:
        named = NAMED[kind](key)
        handle = self.client.get_workflow_handle(named.workflow_id)
        call = handle.execute_update(update, data, result_type=StepAnswer)
        answer: StepAnswer = await attempt(self.client, named, call)
        return answer

    async def register_search_attributes(self) -> list[str]:
        """Add the custom search attributes the namespace lacks (idempotent); the names added."""
        return await search.register(self.client, self.client.namespace)

    async def import_failures(
        self,
        path: Path,
        *,
        concurrency: int = 20,
        fmt: FileFormat | None = None,
        progress: Callable[[ImportSummary], None] | None = None,
        pace: Pace | None = None,
    ) -> ImportSummary:
        """Report every failure of a billing run's file (CSV or JSON Lines), `concurrency` at a
        time and at most `pace` a second; see `intake.bulk` for what is counted how. Raises
        FailureFileError when the file is unusable, ImportAborted when Temporal fails."""
        # read once, before line 1: a broken policy stops the import before it reports anything,
        # and every line starts with the same rules, even if a policy file changes meanwhile
        policies = self.collections.policies()
        # what the database knows of each line's invoice and customer, read a batch at a time
        known: dict[str, Known] = {}

        def prepare(failures: list[BillingFailure]) -> None:
            with suppress(Unavailable):  # each line asks for itself, and stops the import if not
                known.update(self.collections.known_many(failures))

        async def report(failure: BillingFailure) -> str:
            try:
                ahead = known.pop(failure.invoice_id, None)
                return await self.collections.report_failure(failure, policies, ahead)
            except Unavailable:
                raise  # stops the import: run it again
            except ServiceError as err:
                raise LineRejected(str(err)) from None

        counted = dict.fromkeys(IMPORT_RESULTS, 0)

        def count(summary: ImportSummary) -> None:
            """Each line counted once, as the summary moves on (the last tick comes at the end,
            also when Temporal fails half-way)."""
            for result in IMPORT_RESULTS:
                now = getattr(summary, result)
                if now > counted[result]:
                    IMPORT_LINES.labels(result).inc(now - counted[result])
                    counted[result] = now
            if progress is not None:
                progress(summary)

        return await run_import(
            path,
            report,
            fmt=fmt,
            concurrency=concurrency,
            progress=count,
            prepare=prepare,
            pace=pace,
        )

    async def verify(self) -> VerifyReport:
        """Whether the database and Temporal tell the same story (see `service.verify`)."""
        return await verify(client=self.client, settings=self.settings)


ServiceFactory = Callable[[], Awaitable[Service]]


class ServiceConnection:
    """One service for a process, connected on first use (an API or the workspace may start
    before Temporal)."""

    def __init__(self, factory: ServiceFactory) -> None:
        self._factory = factory
        self._service: Service | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Service:
        async with self._lock:
            if self._service is None:
                self._service = await self._factory()
            return self._service


def load_report(settings: Settings, *, now: datetime, days: int, currency: str) -> Report:
    """The managers' report from the settings' database (no Temporal); `days` 0 means all time."""
    with one_off_session(settings.database_url) as session:
        return build_report(
            session,
            now=now,
            since=now - timedelta(days=days) if days else None,
            case_policy=settings.case_policy(),
            currency=currency,
        )


__all__ = [
    "Kind",
    "Service",
    "ServiceConnection",
    "ServiceFactory",
    "Started",
    "load_report",
]
