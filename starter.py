"""The agents' CLI: open a billing case and drive it with validated Temporal updates.

Every command has --help. Input is checked before anything is sent; a refused action changes nothing
and says why. The functions under "API" take an optional client so tests and scripts can reuse them.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core import search, ui
from core.codec import CodecError
from core.models import (
    AddNote,
    Assign,
    BillingFailure,
    CaseDetails,
    CaseEvent,
    CasePolicy,
    CaseView,
    Category,
    CollectionsPolicy,
    CollectionsView,
    Confirm,
    Customer,
    CustomerReply,
    Escalate,
    Locale,
    MarkVianetPaid,
    OpenCase,
    OpenDispute,
    Outcome,
    PaymentReceived,
    Priority,
    PromiseToPay,
    RecordVianetInvoice,
    Reopen,
    ReportFraud,
    RequestInfo,
    Resolve,
    Severity,
    StartCollections,
    UpdateContact,
    VianetInvoiceView,
    VianetResponse,
    VianetTicket,
    Waive,
    Withdraw,
)
from core.settings import Settings, SettingsError, load_settings
from core.temporal import connect
from core.ui import CATEGORY_LABELS, money
from core.verify import VerifyReport
from core.verify import verify as verify_stores
from db.session import one_off_session
from intake.bulk import ImportAborted, ImportSummary, LineRejected, run_import
from intake.failure_file import FailureFileError, FileFormat, detect_format
from reporting.html import write_html
from reporting.queries import Report, build_report
from reporting.terminal import print_report
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow
from workflows.vianet_invoice import VianetInvoiceWorkflow

T = TypeVar("T")
app = typer.Typer(
    help="Billing support for a Partner Center operated by 21Vianet partner.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)


class CaseError(Exception):
    """An action could not be carried out; the message says why, for the agent."""


# --------------------------------------------------------------------------- API


def workflow_id(case_id: str) -> str:
    return f"case-{case_id}"


def new_case_id(now: datetime | None = None) -> str:
    return f"BC-{(now or datetime.now(UTC)):%Y%m%d}-{secrets.token_hex(3).upper()}"


async def open_case(
    data: OpenCase, *, client: Client | None = None, settings: Settings | None = None
) -> CaseView:
    client = client or await connect()
    settings = settings or load_settings()
    try:
        handle = await client.start_workflow(
            BillingCaseWorkflow.run,
            data,
            id=workflow_id(data.case_id),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=ui.case_summary(data),
            static_details=ui.case_details(data),
            search_attributes=search.case_attributes(data.details, owner=data.owner),
        )
    except WorkflowAlreadyStartedError:
        raise CaseError(f"case {data.case_id} already exists") from None
    return await handle.query(BillingCaseWorkflow.view)


async def act(
    case_id: str, update: Any, arg: BaseModel, *, client: Client | None = None
) -> CaseView:
    """Run one agent action (a workflow update) and return the case as it is after it."""
    client = client or await connect()
    handle = client.get_workflow_handle_for(BillingCaseWorkflow.run, workflow_id(case_id))
    try:
        view: CaseView = await handle.execute_update(update, arg)
        return view
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise CaseError(
            cause.message if isinstance(cause, ApplicationError) else str(err)
        ) from None
    except RPCError as err:
        raise CaseError(await _explain(client, case_id, err)) from None


async def show_case(case_id: str, *, client: Client | None = None) -> CaseView:
    client = client or await connect()
    handle = client.get_workflow_handle_for(BillingCaseWorkflow.run, workflow_id(case_id))
    try:
        return await handle.query(BillingCaseWorkflow.view)
    except RPCError as err:
        raise CaseError(await _explain(client, case_id, err)) from None


class Started(StrEnum):
    STARTED = "started"  # a new collections workflow
    JOINED = "joined"  # the invoice's running workflow took the failure


def collections_id(invoice_id: str) -> str:
    return f"collections-{invoice_id}"


async def report_billing_failure(
    failure: BillingFailure,
    *,
    client: Client | None = None,
    settings: Settings | None = None,
    policies: tuple[CollectionsPolicy, CasePolicy] | None = None,
) -> Started:
    """Signal-with-start: the first failure of an invoice starts its CollectionsWorkflow, a repeat
    joins it (and a repeat of the same failure id changes nothing). An invoice whose collections
    already ended (paid, credited, waived) is refused: re-running an import starts nothing.
    `policies`: the collections and the case policy, as a caller reporting many failures read
    them once; by default they are read from the settings' files."""
    client = client or await connect()
    settings = settings or load_settings()
    policy, case_policy = policies or (settings.collections_policy(), settings.case_policy())
    data = StartCollections(failure=failure, policy=policy, case_policy=case_policy)
    try:
        handle = await client.start_workflow(
            CollectionsWorkflow.run,
            data,
            id=collections_id(failure.invoice_id),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            start_signal="billing_failed",
            start_signal_args=[failure],
            static_summary=ui.collections_summary(failure),
            static_details=ui.collections_details(failure),
            search_attributes=search.collections_attributes(
                invoice_id=failure.invoice_id,
                tenant_id=failure.customer.tenant_id,
                stage="opened",
                balance=failure.amount_due,
                suspended=False,
            ),
        )
    except WorkflowAlreadyStartedError:
        ended = await client.get_workflow_handle(collections_id(failure.invoice_id)).describe()
        status = ended.status.name.lower() if ended.status else "ended"
        raise CaseError(
            f"invoice {failure.invoice_id}: its collections already ended ({status})"
        ) from None
    response = getattr(handle, "_start_workflow_response", None)
    return Started.STARTED if getattr(response, "started", True) else Started.JOINED


async def record_payment(
    payment: PaymentReceived, *, client: Client | None = None
) -> CollectionsView:
    """A payment for an invoice in collections (full or partial; a repeated id is a no-op)."""
    client = client or await connect()
    handle = client.get_workflow_handle_for(
        CollectionsWorkflow.run, collections_id(payment.invoice_id)
    )
    try:
        return await handle.execute_update(CollectionsWorkflow.payment_received, payment)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise CaseError(
            cause.message if isinstance(cause, ApplicationError) else str(err)
        ) from None
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise CaseError(f"invoice {payment.invoice_id} is not in collections") from None
        raise CaseError(f"invoice {payment.invoice_id}: {err.message}") from None


async def collections_act(
    invoice_id: str, update: Any, arg: BaseModel, *, client: Client | None = None
) -> CollectionsView:
    """Run one action on an invoice's collections (an update) and return the view after it."""
    client = client or await connect()
    handle = client.get_workflow_handle_for(CollectionsWorkflow.run, collections_id(invoice_id))
    view: CollectionsView = await _update_or_explain(
        handle.execute_update(update, arg),
        lambda err: _explain_collections(client, invoice_id, err),
    )
    return view


async def show_collections(invoice_id: str, *, client: Client | None = None) -> CollectionsView:
    client = client or await connect()
    handle = client.get_workflow_handle_for(CollectionsWorkflow.run, collections_id(invoice_id))
    view: CollectionsView = await _update_or_explain(
        handle.query(CollectionsWorkflow.view),
        lambda err: _explain_collections(client, invoice_id, err),
    )
    return view


async def _update_or_explain(
    call: Awaitable[T], explain: Callable[[RPCError], Awaitable[str]]
) -> T:
    """Await an update or query; a refusal or a missing/ended workflow becomes a CaseError."""
    try:
        return await call
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise CaseError(
            cause.message if isinstance(cause, ApplicationError) else str(err)
        ) from None
    except RPCError as err:
        raise CaseError(await explain(err)) from None


async def _explain_collections(client: Client, invoice_id: str, err: RPCError) -> str:
    try:
        described = await client.get_workflow_handle(collections_id(invoice_id)).describe()
    except RPCError:
        return (
            f"invoice {invoice_id} is not in collections (no workflow {collections_id(invoice_id)})"
        )
    if described.status is not WorkflowExecutionStatus.RUNNING:
        status = described.status.name.lower() if described.status else "ended"
        return f"collections of invoice {invoice_id} has ended ({status}): it takes no more actions"
    return f"invoice {invoice_id}: {err.message}"


# Temporal answers about the line itself (the rest mean Temporal is in trouble: stop the import).
LINE_ERRORS = (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION)


async def import_failures(
    path: Path,
    *,
    client: Client | None = None,
    settings: Settings | None = None,
    concurrency: int = 20,
    fmt: FileFormat | None = None,
    progress: Callable[[ImportSummary], None] | None = None,
) -> ImportSummary:
    """Report every failure of a billing run's file (CSV or JSON Lines) through
    `report_billing_failure`, `concurrency` at a time; see `intake.bulk` for what is counted how.
    Raises FailureFileError when the file is unusable, ImportAborted when Temporal fails."""
    settings = settings or load_settings()
    # read once, before line 1: a broken policy stops the import before it reports anything, and
    # every line of the file starts with the same rules, even if a policy file changes meanwhile
    policies = settings.collections_policy(), settings.case_policy()
    client = client or await connect(settings)

    async def report(failure: BillingFailure) -> str:
        try:
            return await report_billing_failure(
                failure, client=client, settings=settings, policies=policies
            )
        except CaseError as err:
            raise LineRejected(str(err)) from None
        except RPCError as err:
            if err.status in LINE_ERRORS:
                raise LineRejected(f"Temporal refused it: {err.message}") from None
            raise

    return await run_import(path, report, fmt=fmt, concurrency=concurrency, progress=progress)


async def setup(*, client: Client | None = None) -> list[str]:
    """Register the custom search attributes on the namespace (idempotent)."""
    client = client or await connect()
    return await search.register(client, client.namespace)


async def list_workflows(
    name_or_query: str, *, client: Client | None = None, limit: int = 50
) -> list[WorkflowExecution]:
    """The workflows a saved query (by name, see `search.SAVED_QUERIES`) or a raw filter finds,
    newest first, as the UI's workflow list shows them."""
    try:
        query = search.resolve_query(name_or_query)
    except ValueError as err:
        raise CaseError(str(err)) from None
    client = client or await connect()
    try:
        return [execution async for execution in client.list_workflows(query, limit=limit)]
    except RPCError as err:
        if err.status is RPCStatusCode.INVALID_ARGUMENT:
            raise CaseError(f"Temporal refused the filter {query!r}: {err.message}") from None
        raise


async def _explain(client: Client, case_id: str, err: RPCError) -> str:
    try:
        described = await client.get_workflow_handle(workflow_id(case_id)).describe()
    except RPCError:
        return f"no case {case_id} (workflow {workflow_id(case_id)} not found)"
    if described.status is not WorkflowExecutionStatus.RUNNING:
        status = described.status.name.lower() if described.status else "ended"
        return f"case {case_id} has ended ({status}): it takes no more actions"
    return f"case {case_id}: {err.message}"


# --------------------------------------------------------------------------- CLI

DEFAULT_ACTOR = os.environ.get("AGENT_EMAIL") or getpass.getuser()
CaseArg = Annotated[str, typer.Argument(help="The case id, e.g. BC-20261124-7F3A9C.")]
By = Annotated[str, typer.Option("--by", help="Who acts (default: $AGENT_EMAIL or your login).")]


def _build(model: type[T], **fields: Any) -> T:
    """Validate CLI input into a payload; on error name the field and change nothing."""
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
        )
        _fail(f"invalid input: {problems}", code=2)


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except CaseError as err:
        _fail(str(err))
    except RuntimeError as err:  # cannot reach the Temporal server
        _fail(f"Temporal: {err}")
    except SettingsError as err:  # e.g. no payload encryption key
        _fail(f"settings: {err}", code=2)
    except CodecError as err:  # a payload sealed with a key this machine does not hold
        _fail(f"encryption: {err}")


def print_case(view: CaseView, *, timeline: bool = True) -> None:
    d = view.details
    head = Table.grid(padding=(0, 2))
    head.add_row("Status", f"[bold]{view.status.value}[/bold]  (waiting for {view.waiting_for})")
    head.add_row("Customer", f"{d.customer.name} <{d.customer.email}> · {d.customer.locale.value}")
    head.add_row("Tenant", d.customer.tenant_id)
    head.add_row("Subscription", d.subscription_id or "-")
    head.add_row("Invoice", d.invoice_id or "-")
    head.add_row("Category", f"{CATEGORY_LABELS[d.category]} · priority {d.priority.value}")
    head.add_row("Disputed", money(d.disputed_amount, d.currency))
    head.add_row("Owner", view.owner or "unassigned")
    head.add_row("Opened", f"{view.opened_at:%Y-%m-%d %H:%M} UTC by {view.opened_by}")
    if view.next_deadline:
        head.add_row(
            "Next", f"{view.next_deadline_label} at {view.next_deadline:%Y-%m-%d %H:%M} UTC"
        )
    for clock in view.sla:
        state = (
            f"met {clock.met_at:%Y-%m-%d %H:%M}"
            if clock.met_at
            else "paused"
            if clock.paused
            else f"due {clock.due_at:%Y-%m-%d %H:%M}"
            if clock.due_at
            else "-"
        )
        head.add_row(
            f"SLA {clock.name}", state + ("  [red]BREACHED[/red]" if clock.breached else "")
        )
    if view.resolution:
        r = view.resolution
        amount = f" {money(r.credit_amount, d.currency)}" if r.credit_amount else ""
        told = "customer told" if r.customer_told_at else "email pending"
        head.add_row("Resolution", f"{r.outcome.value}{amount} · {told} · {r.summary}")
    for n, esc in enumerate(view.escalations, 1):
        ticket = esc.ticket_number or "not filed yet"
        answer = f" · answered: {esc.response}" if esc.response else ""
        head.add_row(f"21Vianet #{n}", f"severity {esc.severity.value} · ticket {ticket}{answer}")
    if view.reopen_count:
        head.add_row("Reopened", f"{view.reopen_count}×")
    console.print(Panel(head, title=f"Case {view.case_id}", expand=False))
    pending = view.escalations[-1] if view.escalations else None
    if pending and not pending.ticket_number and pending.request_body:
        console.print(
            Panel(
                f"[bold]{pending.request_title}[/bold]\n\n{pending.request_body}",
                title="File this in the 21Vianet portal (Customers → Service requests → New)",
            )
        )
    if timeline:
        table = Table("#", "When (UTC)", "What", "Who", "Details", show_lines=False)
        for event in view.timeline:
            extra = " ".join(f"{k}={v}" for k, v in event.data.items())
            text = " ".join(filter(None, [event.text, extra]))
            table.add_row(
                str(event.seq), f"{event.at:%m-%d %H:%M}", event.kind.value, event.actor, text
            )
        console.print(table)


def _act_and_print(case_id: str, update: Callable[..., Any], arg: BaseModel) -> None:
    view = _run(act(case_id, update, arg))
    print_case(view, timeline=False)


@app.command("open")
def open_command(
    tenant_id: Annotated[str, typer.Option(help="Customer's tenant id (GUID).")],
    name: Annotated[str, typer.Option(help="Customer's company name.")],
    email: Annotated[str, typer.Option(help="Customer's billing contact email.")],
    category: Annotated[Category, typer.Option(help="What the case is about.")],
    description: Annotated[str, typer.Option(help="The customer's question, in their words.")],
    locale: Annotated[Locale, typer.Option(help="Customer's language.")] = Locale.ZH_CN,
    subscription: Annotated[str | None, typer.Option(help="Subscription id (GUID).")] = None,
    invoice: Annotated[str | None, typer.Option(help="Invoice id, e.g. G000123456.")] = None,
    amount: Annotated[str, typer.Option(help="Disputed amount, e.g. 12340.50.")] = "0",
    currency: Annotated[str, typer.Option(help="ISO currency code.")] = "CNY",
    priority: Annotated[Priority, typer.Option(help="Sets the SLA targets.")] = Priority.NORMAL,
    owner: Annotated[str | None, typer.Option(help="Owning agent's email.")] = None,
    case_id: Annotated[str | None, typer.Option(help="Case id (default: generated).")] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Open a billing case: the customer gets an acknowledgement, the owner a notice."""
    try:
        settings = load_settings()
        policy = settings.case_policy()
    except SettingsError as err:
        _fail(f"settings: {err}", code=2)
    customer = _build(Customer, tenant_id=tenant_id, name=name, email=email, locale=locale)
    details = _build(
        CaseDetails,
        customer=customer,
        subscription_id=subscription,
        invoice_id=invoice,
        category=category,
        disputed_amount=amount,
        currency=currency,
        description=description,
        priority=priority,
    )
    data = _build(
        OpenCase,
        case_id=case_id or new_case_id(),
        details=details,
        owner=owner,
        opened_by=by,
        policy=policy,
    )
    view = _run(open_case(data, settings=settings))
    console.print(f"opened case [bold]{view.case_id}[/bold] (workflow {view.workflow_id})")
    print_case(view, timeline=False)


@app.command()
def assign(
    case: CaseArg,
    agent: Annotated[str, typer.Option(help="Agent's email.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Give the case to an agent (they are notified)."""
    _act_and_print(case, BillingCaseWorkflow.assign, _build(Assign, agent=agent, by=by))


@app.command()
def note(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="Internal note.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Add an internal note to the timeline."""
    _act_and_print(case, BillingCaseWorkflow.note, _build(AddNote, text=text, by=by))


@app.command("request-info")
def request_info(
    case: CaseArg,
    question: Annotated[str, typer.Argument(help="What the customer must send or answer.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Ask the customer for information; SLA clocks pause until they reply."""
    _act_and_print(
        case, BillingCaseWorkflow.request_info, _build(RequestInfo, question=question, by=by)
    )


@app.command("customer-reply")
def customer_reply(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="The customer's reply.")],
    by: Annotated[str, typer.Option("--by")] = "customer",
) -> None:
    """Record the customer's reply; the clocks run again."""
    _act_and_print(
        case, BillingCaseWorkflow.customer_reply, _build(CustomerReply, text=text, by=by)
    )


@app.command()
def resolve(
    case: CaseArg,
    outcome: Annotated[Outcome, typer.Option(help="How the case was resolved.")],
    summary: Annotated[str, typer.Option(help="What the customer is told.")],
    credit: Annotated[
        str | None, typer.Option(help="Credit/refund amount (credit-issued, refund-issued).")
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Resolve the case; the customer is emailed the resolution and may confirm or reopen."""
    arg = _build(Resolve, outcome=outcome, summary=summary, credit_amount=credit, by=by)
    _act_and_print(case, BillingCaseWorkflow.resolve, arg)


@app.command()
def escalate(
    case: CaseArg,
    reason: Annotated[str, typer.Option(help="Why the partner cannot resolve it alone.")],
    severity: Annotated[
        Severity, typer.Option(help="A critical (2 h), B moderate (4 h), C minimal (8 h).")
    ] = Severity.C,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Escalate to 21Vianet: prints the request to file in the portal; the customer is told."""
    arg = _build(Escalate, reason=reason, severity=severity, by=by)
    _act_and_print(case, BillingCaseWorkflow.escalate, arg)


@app.command("vianet-ticket")
def vianet_ticket(
    case: CaseArg,
    ticket_number: Annotated[str, typer.Argument(help="The number the 21Vianet portal gave.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record the 21Vianet ticket number after filing the request in the portal."""
    arg = _build(VianetTicket, ticket_number=ticket_number, by=by)
    _act_and_print(case, BillingCaseWorkflow.vianet_ticket, arg)


@app.command("vianet-response")
def vianet_response(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="21Vianet's answer.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record 21Vianet's answer; the case returns to the agent to resolve."""
    arg = _build(VianetResponse, text=text, by=by)
    _act_and_print(case, BillingCaseWorkflow.vianet_response, arg)


@app.command()
def confirm(case: CaseArg, by: Annotated[str, typer.Option("--by")] = "customer") -> None:
    """The customer confirms the resolution: the case closes with a final email."""
    _act_and_print(case, BillingCaseWorkflow.confirm, _build(Confirm, by=by))


@app.command()
def reopen(
    case: CaseArg,
    reason: Annotated[str, typer.Option(help="Why the customer is not satisfied.")],
    by: Annotated[str, typer.Option("--by")] = "customer",
) -> None:
    """Reopen a resolved case within the reopen window: back to resolution."""
    _act_and_print(case, BillingCaseWorkflow.reopen, _build(Reopen, reason=reason, by=by))


@app.command()
def withdraw(
    case: CaseArg,
    reason: Annotated[str, typer.Option(help="Why the case is withdrawn.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Withdraw the case (e.g. the customer no longer disputes it); the customer is told."""
    _act_and_print(case, BillingCaseWorkflow.withdraw, _build(Withdraw, reason=reason, by=by))


@app.command()
def contact(
    case: CaseArg,
    email: Annotated[str, typer.Option(help="The customer's new billing contact email.")],
    locale: Annotated[Locale | None, typer.Option(help="Their language, if it changes.")] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Correct the customer's contact (e.g. after a bounced email)."""
    arg = _build(UpdateContact, email=email, locale=locale, by=by)
    _act_and_print(case, BillingCaseWorkflow.update_contact, arg)


@app.command()
def show(case: CaseArg) -> None:
    """Print the case's state and timeline."""
    print_case(_run(show_case(case)))


@app.command("setup")
def setup_command() -> None:
    """Register the custom search attributes on the Temporal namespace (idempotent)."""
    added = _run(setup())
    console.print(f"search attributes added: {', '.join(added) or 'none (all present)'}")


@app.command("list")
def list_command(
    query: Annotated[
        str,
        typer.Option(
            "--query",
            "-q",
            help="A saved query: "
            + "; ".join(f"{name} ({saved.shows})" for name, saved in search.SAVED_QUERIES.items())
            + ". Or a raw filter as typed in the UI, e.g. 'CasePriority = \"urgent\"'.",
        ),
    ] = "escalated",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many rows.")] = 50,
) -> None:
    """List workflows the way a manager filters them in the Temporal UI (same queries)."""
    executions = _run(list_workflows(query, limit=limit))
    console.print(f"[dim]{search.resolve_query(query)}[/dim]", soft_wrap=True)
    if not executions:
        console.print("no workflows match")
        return
    console.print(workflows_table(executions))


def workflows_table(executions: list[WorkflowExecution]) -> Table:
    """Ids, status and search attributes only: never a payload, so no customer data."""
    table = Table()
    for header in ("Workflow", "Type", "Status", "Stage", "Priority"):
        table.add_column(header, no_wrap=True)
    for header in ("Owner", "Tenant", "Invoice"):
        table.add_column(header, overflow="fold")
    table.add_column("Amount", justify="right", no_wrap=True)
    table.add_column("Flags")
    for execution in executions:
        attrs = execution.typed_search_attributes
        amount = attrs.get(search.DISPUTED_AMOUNT)
        if amount is None:
            amount = attrs.get(search.AMOUNT_DUE)
        flags = [
            name
            for key, name in (
                (search.SLA_BREACHED, "SLA breached"),
                (search.ESCALATED_TO_VIANET, "21Vianet"),
                (search.SUSPENDED, "suspended"),
            )
            if attrs.get(key)
        ]
        table.add_row(
            execution.id,
            execution.workflow_type.removesuffix("Workflow"),
            execution.status.name.lower() if execution.status else "-",
            attrs.get(search.CASE_STATUS) or attrs.get(search.COLLECTIONS_STAGE) or "-",
            attrs.get(search.CASE_PRIORITY) or "-",
            attrs.get(search.ASSIGNED_AGENT) or "-",
            attrs.get(search.CUSTOMER_TENANT_ID) or "-",
            attrs.get(search.INVOICE_ID) or "-",
            f"{amount:,.2f}" if amount is not None else "-",
            ", ".join(flags) or "-",
        )
    return table


# --------------------------------------------------------------------------- collections CLI

InvoiceArg = Annotated[str, typer.Argument(help="The invoice id, e.g. G000123456.")]


def _now() -> datetime:
    return datetime.now(UTC)


def _load_settings() -> Settings:
    try:
        settings = load_settings()
        settings.collections_policy(), settings.case_policy()
    except SettingsError as err:
        _fail(f"settings: {err}", code=2)
    return settings


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


def print_collections(view: CollectionsView, *, timeline: bool = True) -> None:
    c, cur = view.customer, view.currency
    head = Table.grid(padding=(0, 2))
    head.add_row("Status", f"[bold]{view.status.value}[/bold] · stage {view.stage}")
    head.add_row("Customer", f"{c.name} <{c.email}> · {c.locale.value}")
    head.add_row("Tenant", c.tenant_id)
    head.add_row(
        "Balance",
        f"[bold]{money(view.balance, cur)}[/bold] (due {money(view.amount_due, cur)}, "
        f"paid {money(view.paid, cur)}, credited {money(view.credited, cur)})",
    )
    if view.next_step:
        head.add_row("Next", f"{view.next_step} on {_when(view.next_step_at)}")
    if view.promised_until:
        head.add_row("Promised", f"payment by {_when(view.promised_until)}")
    suspended = view.suspended_subscriptions
    head.add_row(
        "Suspended",
        f"{len(suspended)} since {_when(view.suspended_at)}: {', '.join(suspended)}"
        if suspended
        else "-",
    )
    head.add_row("Data deletion", _when(view.data_deletion_at))
    if view.fraud:
        head.add_row("Fraud", "[red]reported[/red]")
    head.add_row("Linked case", view.linked_case_id or "-")
    head.add_row("Failures", f"{len(view.failures)}: {', '.join(view.failures)}")
    head.add_row("Subscriptions", ", ".join(view.subscription_ids))
    console.print(Panel(head, title=f"Collections {view.invoice_id}", expand=False))
    if timeline:
        console.print(timeline_table(view.timeline))


def timeline_table(events: list[CaseEvent]) -> Table:
    table = Table("#", "When (UTC)", "What", "Who", "Details")
    for event in events:
        extra = " ".join(f"{k}={v}" for k, v in event.data.items())
        text = " ".join(filter(None, [event.text, extra]))
        table.add_row(
            str(event.seq), f"{event.at:%m-%d %H:%M}", event.kind.value, event.actor, text
        )
    return table


def _collections_act(invoice: str, update: Callable[..., Any], arg: BaseModel) -> None:
    print_collections(_run(collections_act(invoice, update, arg)), timeline=False)


@app.command("billing-failure")
def billing_failure(
    failure_id: Annotated[str, typer.Option(help="The billing system's id of this failure.")],
    invoice: Annotated[str, typer.Option(help="Invoice id, e.g. G000123456.")],
    tenant_id: Annotated[str, typer.Option(help="Customer's tenant id (GUID).")],
    name: Annotated[str, typer.Option(help="Customer's company name.")],
    email: Annotated[str, typer.Option(help="Customer's billing contact email.")],
    subscription: Annotated[
        list[str], typer.Option(help="Subscription id (GUID) on the invoice; repeat for each.")
    ],
    amount: Annotated[str, typer.Option(help="Amount due, e.g. 12340.50.")],
    locale: Annotated[Locale, typer.Option(help="Customer's language.")] = Locale.ZH_CN,
    currency: Annotated[str, typer.Option(help="ISO currency code.")] = "CNY",
    failed_at: Annotated[
        str | None,
        typer.Option(help="When it failed, ISO 8601 with timezone (default: now)."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why the payment failed.")] = "payment failed",
) -> None:
    """Report a failed payment: starts the invoice's collections, or joins the running one.

    Exit code 2: bad input; 1: refused (e.g. the invoice's collections already ended)."""
    settings = _load_settings()
    customer = _build(Customer, tenant_id=tenant_id, name=name, email=email, locale=locale)
    failure = _build(
        BillingFailure,
        failure_id=failure_id,
        invoice_id=invoice,
        customer=customer,
        subscription_ids=subscription,
        amount_due=amount,
        currency=currency,
        failed_at=failed_at or _now(),
        reason=reason,
    )
    result = _run(report_billing_failure(failure, settings=settings))
    what = "started" if result is Started.STARTED else "joined the running"
    console.print(
        f"{what} collections of invoice {failure.invoice_id} "
        f"(workflow {collections_id(failure.invoice_id)})",
        soft_wrap=True,
    )


@app.command("payment-received")
def payment_received(
    payment_id: Annotated[str, typer.Option(help="The billing system's id of this payment.")],
    invoice: Annotated[str, typer.Option(help="Invoice id, e.g. G000123456.")],
    amount: Annotated[str, typer.Option(help="Amount received, e.g. 5000.00.")],
    currency: Annotated[str, typer.Option(help="ISO currency code.")] = "CNY",
    received_at: Annotated[
        str | None,
        typer.Option(help="When it was received, ISO 8601 with timezone (default: now)."),
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Who records it.")] = "billing-system",
) -> None:
    """Record a payment (full or partial) on an invoice in collections; a repeated id counts once.

    Exit code 2: bad input; 1: refused (not in collections, ended, other currency)."""
    payment = _build(
        PaymentReceived,
        payment_id=payment_id,
        invoice_id=invoice,
        amount=amount,
        currency=currency,
        received_at=received_at or _now(),
        by=by,
    )
    view = _run(record_payment(payment))
    cur = view.currency
    console.print(
        f"invoice {view.invoice_id}: balance {money(view.balance, cur)} "
        f"(paid {money(view.paid, cur)} of {money(view.amount_due, cur)}) · "
        f"status {view.status.value}",
        soft_wrap=True,
    )


@app.command("import-failures")
def import_failures_command(
    file: Annotated[
        Path,
        typer.Argument(help="The billing run's failures: .csv, .jsonl or .ndjson.", dir_okay=False),
    ],
    fmt: Annotated[
        FileFormat | None,
        typer.Option("--format", help="File format (default: from the extension)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=500, help="Failures reported at the same time.")
    ] = 20,
) -> None:
    """Import a billing run's failures: each line starts or joins its invoice's collections.

    CSV has a header row with the columns failure_id, invoice_id, tenant_id, customer_name,
    customer_email, locale, subscription_ids (separated by ;), amount_due, currency, failed_at
    (ISO 8601 with timezone), reason (locale, currency and reason may be empty or left out).
    JSON Lines has one object per line with the same names (subscription_ids a list).

    Rejected lines (bad fields, bad CSV/JSON, lines over 64 KiB, invoices whose collections ended)
    are written with their line number and reason beside the file, to FILE.rejected.csv or
    FILE.rejected.jsonl. A line repeated in the file joins; running the import again starts nothing
    new. Exit code 0: every line accepted; 1: some rejected, or Temporal failed (run it again:
    it is idempotent); 2: the file is unusable (format, header) and nothing was reported.
    """
    settings = _load_settings()
    try:
        fmt = detect_format(file, fmt)
    except FailureFileError as err:
        _fail(str(err), code=2)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        size = file.stat().st_size if file.exists() else None
        task = bar.add_task(file.name, total=size, counts="")

        def show(s: ImportSummary) -> None:
            counts = f"started {s.started} · joined {s.joined} · rejected {s.rejected}"
            bar.update(task, completed=s.bytes_read, counts=counts)

        try:
            summary = _run(
                import_failures(
                    file, settings=settings, concurrency=concurrency, fmt=fmt, progress=show
                )
            )
        except FailureFileError as err:
            bar.stop()
            _fail(str(err), code=2)
        except ImportAborted as err:
            bar.stop()
            _print_summary(file, err.summary)
            _fail(f"{err} — run the import again (lines already reported only join)")
    _print_summary(file, summary)
    if summary.rejected:
        raise typer.Exit(1)


def _print_summary(file: Path, summary: ImportSummary) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_row("lines read", f"{summary.lines:,}")
    table.add_row("started", f"{summary.started:,}")
    table.add_row("joined a running workflow", f"{summary.joined:,}")
    table.add_row("rejected", f"{summary.rejected:,}")
    console.print(Panel(table, title=f"Import of {file.name}", expand=False))
    if summary.rejected_file:
        console.print(f"rejected lines, with reasons: {summary.rejected_file}", soft_wrap=True)


@app.command()
def dispute(
    invoice: InvoiceArg,
    description: Annotated[str, typer.Option(help="What the customer disputes, in their words.")],
    amount: Annotated[
        str | None, typer.Option(help="Disputed amount (default: the whole balance).")
    ] = None,
    case: Annotated[
        str | None, typer.Option(help="Link this existing case instead of opening one.")
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """The customer disputes the invoice: opens (or links) a case; no suspension meanwhile."""
    arg = _build(OpenDispute, case_id=case, description=description, disputed_amount=amount, by=by)
    _collections_act(invoice, CollectionsWorkflow.open_dispute, arg)


@app.command()
def fraud(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="What indicates fraud or misuse.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Report fraud or misuse: the subscriptions are suspended now and a manager is told."""
    _collections_act(
        invoice, CollectionsWorkflow.report_fraud, _build(ReportFraud, reason=reason, by=by)
    )


@app.command()
def promise(
    invoice: InvoiceArg,
    until: Annotated[str, typer.Option(help="Promised payment date, ISO 8601 with timezone.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record a promise to pay: the policy pauses until that date."""
    arg = _build(PromiseToPay, until=until, by=by)
    if arg.until.tzinfo is None:
        _fail("invalid input: until: must include a timezone (e.g. 2026-12-01T18:00:00+08:00)", 2)
    _collections_act(invoice, CollectionsWorkflow.promise_to_pay, arg)


@app.command()
def waive(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why the balance is waived (manager).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Waive the balance (a manager's decision): what was suspended is reactivated; it closes."""
    _collections_act(invoice, CollectionsWorkflow.waive, _build(Waive, reason=reason, by=by))


@app.command("collections-show")
def collections_show(invoice: InvoiceArg) -> None:
    """Print an invoice's collections: balance, stage, next step, suspensions, timeline."""
    print_collections(_run(show_collections(invoice)))


# --------------------------------------------------------------------------- payable to 21Vianet


def vianet_invoice_id(invoice_number: str) -> str:
    return f"vianet-invoice-{invoice_number}"


async def record_vianet_invoice(
    data: RecordVianetInvoice, *, client: Client | None = None, settings: Settings | None = None
) -> VianetInvoiceView:
    """Start the invoice's VianetInvoiceWorkflow; an invoice number is recorded once, ever."""
    client = client or await connect()
    settings = settings or load_settings()
    try:
        handle = await client.start_workflow(
            VianetInvoiceWorkflow.run,
            data,
            id=vianet_invoice_id(data.invoice_number),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=(
                f"21Vianet invoice {data.invoice_number} · {money(data.amount, data.currency)} · "
                f"due {data.due_date.isoformat()}"
            ),
        )
    except WorkflowAlreadyStartedError:
        raise CaseError(f"21Vianet invoice {data.invoice_number} is already recorded") from None
    view: VianetInvoiceView = await handle.query(VianetInvoiceWorkflow.view)
    return view


async def mark_vianet_paid(
    invoice_number: str, data: MarkVianetPaid, *, client: Client | None = None
) -> VianetInvoiceView:
    """Mark the partner's payment of a 21Vianet invoice: the reminders stop and it closes."""
    client = client or await connect()
    handle = client.get_workflow_handle_for(
        VianetInvoiceWorkflow.run, vianet_invoice_id(invoice_number)
    )
    view: VianetInvoiceView = await _update_or_explain(
        handle.execute_update(VianetInvoiceWorkflow.mark_paid, data),
        lambda err: _explain_vianet(client, invoice_number, err),
    )
    return view


async def show_vianet_invoice(
    invoice_number: str, *, client: Client | None = None
) -> VianetInvoiceView:
    client = client or await connect()
    handle = client.get_workflow_handle_for(
        VianetInvoiceWorkflow.run, vianet_invoice_id(invoice_number)
    )
    view: VianetInvoiceView = await _update_or_explain(
        handle.query(VianetInvoiceWorkflow.view),
        lambda err: _explain_vianet(client, invoice_number, err),
    )
    return view


async def _explain_vianet(client: Client, invoice_number: str, err: RPCError) -> str:
    workflow = vianet_invoice_id(invoice_number)
    try:
        described = await client.get_workflow_handle(workflow).describe()
    except RPCError:
        return f"no 21Vianet invoice {invoice_number} is recorded (no workflow {workflow})"
    if described.status is WorkflowExecutionStatus.COMPLETED:
        return f"21Vianet invoice {invoice_number} is already marked paid"
    if described.status is not WorkflowExecutionStatus.RUNNING:
        status = described.status.name.lower() if described.status else "ended"
        return f"21Vianet invoice {invoice_number} has ended ({status})"
    return f"21Vianet invoice {invoice_number}: {err.message}"


def load_report(settings: Settings, *, now: datetime, days: int, currency: str) -> Report:
    """Read the report from the settings' database; `days` 0 means all time."""
    with one_off_session(settings.database_url) as session:
        return build_report(
            session,
            now=now,
            since=now - timedelta(days=days) if days else None,
            case_policy=settings.case_policy(),
            currency=currency,
        )


def print_vianet_invoice(view: VianetInvoiceView) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_row("Status", f"[bold]{view.status.value}[/bold]")
    head.add_row("Amount", money(view.amount, view.currency))
    head.add_row("Due", f"{view.due_date.isoformat()} (China Standard Time)")
    head.add_row("Recorded", f"{_when(view.recorded_at)} by {view.recorded_by}")
    head.add_row(
        "Reminders",
        f"{view.reminders_sent} sent to {view.finance_email} "
        f"({view.remind_days_before} days before and on the due date)",
    )
    if view.next_reminder:
        head.add_row("Next", f"{view.next_reminder} on {_when(view.next_reminder_at)}")
    if view.escalated_at:
        head.add_row("Overdue", f"{view.manager_email} told on {_when(view.escalated_at)}")
    if view.paid_at:
        head.add_row(
            "Paid", f"{_when(view.paid_at)} · reference {view.paid_reference} · by {view.paid_by}"
        )
    console.print(Panel(head, title=f"21Vianet invoice {view.invoice_number}", expand=False))


VianetArg = Annotated[str, typer.Argument(help="21Vianet's invoice number.")]


@app.command("vianet-invoice")
def vianet_invoice(
    invoice_number: VianetArg,
    amount: Annotated[str, typer.Option(help="Amount due to 21Vianet, e.g. 1286400.00.")],
    due_date: Annotated[str, typer.Option(help="Due date, YYYY-MM-DD (China Standard Time).")],
    currency: Annotated[str, typer.Option(help="21Vianet bills its partners in CNY.")] = "CNY",
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record an invoice 21Vianet sent the partner: finance is reminded before the due date and
    on it, a manager is told the day after if it is not marked paid (vianet-paid).

    Exit code 2: bad input; 1: refused (already recorded)."""
    settings = _load_settings()
    data = _build(
        RecordVianetInvoice,
        invoice_number=invoice_number,
        amount=amount,
        currency=currency,
        due_date=due_date,
        recorded_by=by,
        finance_email=settings.finance_email,
        manager_email=settings.case_policy().manager_email,
        remind_days_before=settings.vianet_invoice_reminder_days,
        locale=settings.finance_locale,
    )
    print_vianet_invoice(_run(record_vianet_invoice(data, settings=settings)))


@app.command("vianet-paid")
def vianet_paid(
    invoice_number: VianetArg,
    reference: Annotated[str, typer.Option(help="The bank transfer's reference.")],
    paid_at: Annotated[
        str | None, typer.Option(help="When it was paid, ISO 8601 with timezone (default: now).")
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Mark a 21Vianet invoice paid: its reminders stop and it is closed.

    Exit code 2: bad input; 1: refused (not recorded, already paid, paid_at in the future)."""
    arg = _build(MarkVianetPaid, paid_at=paid_at or _now(), reference=reference, by=by)
    print_vianet_invoice(_run(mark_vianet_paid(invoice_number, arg)))


@app.command("vianet-invoice-show")
def vianet_invoice_show(invoice_number: VianetArg) -> None:
    """Print a 21Vianet invoice: amount, due date, reminders, payment, timeline."""
    view = _run(show_vianet_invoice(invoice_number))
    print_vianet_invoice(view)
    console.print(timeline_table(view.timeline))


@app.command()
def report(
    html: Annotated[
        Path | None,
        typer.Option(
            help="Also write a self-contained HTML page with charts here.", dir_okay=False
        ),
    ] = None,
    days: Annotated[
        int,
        typer.Option(min=0, help="Period of the SLA, escalation and closing figures; 0: all time."),
    ] = 30,
    currency: Annotated[str, typer.Option(help="Currency of the money figures.")] = "CNY",
) -> None:
    """The managers' report, from the database: backlog by status and age, SLA attainment,
    escalations and 21Vianet's response times, time to close, reopens, money in dispute,
    receivables in collections, suspended subscriptions, and what the partner owes 21Vianet
    against what its customers owe it.

    Exit code 2: bad input or settings; 1: the database cannot be read."""
    if not re.fullmatch(r"[A-Z]{3}", currency):
        _fail("invalid input: currency: must be an ISO code of 3 capital letters, e.g. CNY", 2)
    settings = _load_settings()
    try:
        result = load_report(settings, now=_now(), days=days, currency=currency)
    except SQLAlchemyError as err:
        reason = getattr(err, "orig", None) or err
        _fail(f"database: {reason} (is it migrated? python -m db.migrate)")
    print_report(result, console)
    if html is not None:
        write_html(result, settings.templates_dir, html)
        console.print(f"HTML report written to {html}", soft_wrap=True)


async def _verify(settings: Settings) -> VerifyReport:
    return await verify_stores(client=await connect(settings), settings=settings)


@app.command()
def verify() -> None:
    """Check that the database and Temporal agree: every case and collections row has its
    workflow with the same final status (a running workflow may be ahead of its row, never
    behind), every case and collections workflow on the task queue has its row, and no email has
    been pending for more than 5 minutes.

    Exit code 1: a difference (listed), or Temporal or the database cannot be read."""
    settings = _load_settings()
    try:
        result = _run(_verify(settings))
    except SQLAlchemyError as err:
        reason = getattr(err, "orig", None) or err
        _fail(f"database: {reason} (is it migrated? python -m db.migrate)")
    console.print(
        f"{result.cases} cases, {result.collections} collections in the database; "
        f"{result.workflows} workflows in Temporal ({result.running} running)"
    )
    if result.ok:
        console.print("no differences")
        return
    table = Table(title=f"differences: {len(result.differences)}")
    for header in ("Kind", "Id", "Problem", "Database", "Temporal"):
        table.add_column(header, overflow="fold")
    for d in result.differences:
        table.add_row(d.kind, d.id, d.problem, d.database, d.temporal)
    console.print(table)
    raise typer.Exit(1)


if __name__ == "__main__":
    app()
