"""The operators' CLI: parsing and printing only, over the service layer (`service`).

Every command has --help. Input is checked before anything is sent (exit 2, naming the field); a
refused action changes nothing and says why (exit 1). Customer text is printed as plain text.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import WorkflowExecution

from core import search
from core.codec import CodecError
from core.formatting import money, utc_minute
from core.ids import collections_workflow_id
from core.models import (
    AccountOverrides,
    AccountView,
    AddNote,
    Assign,
    BillingFailure,
    CaseEvent,
    CaseForm,
    CaseView,
    Category,
    CollectionsView,
    Confirm,
    CorrectContact,
    Customer,
    CustomerReply,
    Escalate,
    HoldReason,
    LiftFraud,
    Locale,
    MarkVianetPaid,
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
    ResumePolicy,
    RetryStep,
    SetOverrides,
    Severity,
    SkipStep,
    TriageReply,
    UpdateContact,
    VianetInvoiceView,
    VianetResponse,
    VianetTicket,
    Waive,
    Withdraw,
)
from core.settings import Settings, SettingsError, load_settings
from core.ui import CATEGORY_LABELS
from intake import drop_folder
from intake.bulk import ImportAborted, ImportSummary
from intake.drop_folder import TryLater
from intake.failure_file import FailureFileError, FileFormat, detect_format
from reporting.html import write_html
from reporting.terminal import print_report
from service import Kind, Service, Started, load_report
from service.cases import CaseAction
from service.collections import Approve, InvoiceAction, RefuseSuspension
from service.errors import ServiceError, Unavailable
from service.users import Account, NewPassword, NewUser, Role, Users

T = TypeVar("T")
app = typer.Typer(
    help="Billing support for a Partner Center operated by 21Vianet partner.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
# C0 and C1 controls but newline and tab, and the bidi controls: never sent to the terminal
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _default_actor() -> str:
    try:
        return os.environ.get("AGENT_EMAIL") or getpass.getuser()
    except (KeyError, OSError):  # a container user with no name
        return "operator"


DEFAULT_ACTOR = _default_actor()
CaseArg = Annotated[str, typer.Argument(help="The case id, e.g. BC-20261124-7F3A9C.")]
InvoiceArg = Annotated[str, typer.Argument(help="The invoice id, e.g. G000123456.")]
VianetArg = Annotated[str, typer.Argument(help="21Vianet's invoice number.")]
By = Annotated[str, typer.Option("--by", help="Who acts (default: $AGENT_EMAIL or your login).")]
Customer_ = Annotated[str, typer.Option("--by")]


# --------------------------------------------------------------------------- plumbing


def plain(value: object, style: str = "") -> Text:
    """Text as given, never read as markup; control characters shown as U+FFFD."""
    return Text(_UNPRINTABLE.sub("\ufffd", str(value)), style=style)


def _build(model: type[T], **fields: Any) -> T:
    """Validate CLI input into a payload; on error name the field and change nothing."""
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        _fail(f"invalid input: {problems}", code=2)


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(Text.assemble(("error:", "red"), " ", plain(message)))
    raise typer.Exit(code)


def _load_settings(*, inbound: bool = False) -> Settings:
    """`inbound`: for a command that takes customers' email (it needs EMAIL_THREAD_SECRET)."""
    try:
        settings = load_settings()
        settings.collections_policy(), settings.case_policy()
        if inbound:
            settings.inbound_threads()
    except SettingsError as err:
        _fail(f"settings: {err}", code=2)
    return settings


def _call(action: Callable[[Service], Awaitable[T]], settings: Settings | None = None) -> T:
    """Connect, do one thing through the service, and turn its errors into exit codes."""
    settings = settings or _load_settings()

    async def run() -> T:
        return await action(await Service.connect(settings))

    try:
        return asyncio.run(run())
    except ServiceError as err:
        _fail(str(err))
    except SettingsError as err:  # e.g. no payload encryption key
        _fail(f"settings: {err}", code=2)
    except CodecError as err:  # a payload sealed with a key this machine does not hold
        _fail(f"encryption: {err}")


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- printing


def attention_row(head: Table, needs_attention: str | None) -> None:
    if needs_attention:
        head.add_row("Attention", plain(needs_attention, "bold red"))


def timeline_table(events: list[CaseEvent], count: int = 0) -> Table:
    """The events a view has: the last ones (the database has them all, long texts whole)."""
    shown = f"last {len(events)} of {count} events" if count > len(events) else "events"
    table = Table("#", "When (UTC)", "What", "Who", "Details", title=f"Timeline: {shown}")
    for event in events:
        extra = " ".join(f"{k}={v}" for k, v in event.data.items())
        table.add_row(
            str(event.seq),
            f"{event.at:%m-%d %H:%M}",
            event.kind.value,
            plain(event.actor),
            plain(" ".join(filter(None, [event.text, extra]))),
        )
    return table


def print_case(view: CaseView, *, timeline: bool = True) -> None:
    d = view.details
    head = Table.grid(padding=(0, 2))
    attention_row(head, view.needs_attention)
    head.add_row(
        "Status", Text.assemble((view.status.value, "bold"), f"  (waiting for {view.waiting_for})")
    )
    customer = d.customer
    head.add_row("Customer", plain(f"{customer.name} <{customer.email}> · {customer.locale.value}"))
    head.add_row("Tenant", d.customer.tenant_id)
    head.add_row("Subscription", d.subscription_id or "-")
    head.add_row("Invoice", d.invoice_id or "-")
    head.add_row("Category", f"{CATEGORY_LABELS[d.category]} · priority {d.priority.value}")
    head.add_row("Disputed", money(d.disputed_amount, d.currency))
    head.add_row("Owner", plain(view.owner or "unassigned"))
    head.add_row("Opened", plain(f"{utc_minute(view.opened_at)} by {view.opened_by}"))
    if view.next_deadline:
        head.add_row("Next", f"{view.next_deadline_label} at {utc_minute(view.next_deadline)}")
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
        breached = ("  BREACHED", "red") if clock.breached else ""
        head.add_row(f"SLA {clock.name}", Text.assemble(state, breached))
    if view.resolution:
        r = view.resolution
        amount = f" {money(r.credit_amount, d.currency)}" if r.credit_amount else ""
        told = "customer told" if r.customer_told_at else "email pending"
        head.add_row("Resolution", plain(f"{r.outcome.value}{amount} · {told} · {r.summary}"))
    for n, esc in enumerate(view.escalations, 1):
        ticket = esc.ticket_number or "not filed yet"
        answer = f" · answered: {esc.response}" if esc.response else ""
        head.add_row(
            f"21Vianet #{n}", plain(f"severity {esc.severity.value} · ticket {ticket}{answer}")
        )
    if view.reopen_count:
        head.add_row("Reopened", f"{view.reopen_count}×")
    console.print(Panel(head, title=f"Case {view.case_id}", expand=False))
    pending = view.escalations[-1] if view.escalations else None
    if pending and not pending.ticket_number and pending.request_body:
        console.print(
            Panel(
                Text.assemble(
                    plain(pending.request_title, "bold"), "\n\n", plain(pending.request_body)
                ),
                title="File this in the 21Vianet portal (Customers → Service requests → New)",
            )
        )
    if timeline:
        console.print(timeline_table(view.timeline, view.event_count))


def print_collections(view: CollectionsView, *, timeline: bool = True) -> None:
    c, cur = view.customer, view.currency
    head = Table.grid(padding=(0, 2))
    attention_row(head, view.needs_attention)
    head.add_row("Status", Text.assemble((view.status.value, "bold"), f" · stage {view.stage}"))
    head.add_row("Customer", plain(f"{c.name} <{c.email}> · {c.locale.value}"))
    head.add_row("Tenant", c.tenant_id)
    head.add_row(
        "Balance",
        Text.assemble(
            (money(view.balance, cur), "bold"),
            f" (due {money(view.amount_due, cur)}, paid {money(view.paid, cur)}, "
            f"credited {money(view.credited, cur)})",
        ),
    )
    if view.next_step:
        head.add_row("Next", f"{view.next_step} on {utc_minute(view.next_step_at)}")
    if view.promised_until:
        head.add_row("Promised", f"payment by {utc_minute(view.promised_until)}")
    suspended = view.suspended_subscriptions
    head.add_row(
        "Suspended",
        f"{len(suspended)} since {utc_minute(view.suspended_at)}: {', '.join(suspended)}"
        if suspended
        else "-",
    )
    head.add_row("Data deletion", utc_minute(view.data_deletion_at))
    if view.fraud:
        head.add_row("Fraud", Text("reported", style="red"))
    head.add_row("Linked case", view.linked_case_id or "-")
    head.add_row("Failures", plain(f"{len(view.failures)}: {', '.join(view.failures)}"))
    head.add_row("Subscriptions", ", ".join(view.subscription_ids))
    console.print(Panel(head, title=f"Collections {view.invoice_id}", expand=False))
    if timeline:
        console.print(timeline_table(view.timeline, view.event_count))


def print_vianet_invoice(view: VianetInvoiceView) -> None:
    head = Table.grid(padding=(0, 2))
    attention_row(head, view.needs_attention)
    head.add_row("Status", Text(view.status.value, style="bold"))
    head.add_row("Amount", money(view.amount, view.currency))
    head.add_row("Due", f"{view.due_date.isoformat()} (China Standard Time)")
    head.add_row("Recorded", plain(f"{utc_minute(view.recorded_at)} by {view.recorded_by}"))
    head.add_row(
        "Reminders",
        f"{view.reminders_sent} sent to {view.finance_email} "
        f"({view.remind_days_before} days before and on the due date)",
    )
    if view.next_reminder:
        head.add_row("Next", f"{view.next_reminder} on {utc_minute(view.next_reminder_at)}")
    if view.escalated_at:
        head.add_row("Overdue", f"{view.manager_email} told on {utc_minute(view.escalated_at)}")
    if view.paid_at:
        head.add_row(
            "Paid",
            plain(
                f"{utc_minute(view.paid_at)} · reference {view.paid_reference} · by {view.paid_by}"
            ),
        )
    console.print(Panel(head, title=f"21Vianet invoice {view.invoice_number}", expand=False))


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
            plain(execution.id),
            execution.workflow_type.removesuffix("Workflow"),
            execution.status.name.lower() if execution.status else "-",
            plain(attrs.get(search.CASE_STATUS) or attrs.get(search.COLLECTIONS_STAGE) or "-"),
            plain(attrs.get(search.CASE_PRIORITY) or "-"),
            plain(attrs.get(search.ASSIGNED_AGENT) or "-"),
            plain(attrs.get(search.CUSTOMER_TENANT_ID) or "-"),
            plain(attrs.get(search.INVOICE_ID) or "-"),
            f"{amount:,.2f}" if amount is not None else "-",
            ", ".join(flags) or "-",
        )
    return table


def _print_summary(file: Path, summary: ImportSummary) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_row("lines read", f"{summary.lines:,}")
    table.add_row("started", f"{summary.started:,}")
    table.add_row("joined a running workflow", f"{summary.joined:,}")
    table.add_row("rejected", f"{summary.rejected:,}")
    console.print(Panel(table, title=plain(f"Import of {file.name}"), expand=False))
    if summary.rejected_file:
        console.print(
            plain(f"rejected lines, with reasons: {summary.rejected_file}"), soft_wrap=True
        )


# --------------------------------------------------------------------------- cases


def _act(case_id: str, action: CaseAction) -> None:
    print_case(_call(lambda service: service.cases.act(case_id, action)), timeline=False)


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
    by: By = DEFAULT_ACTOR,
) -> None:
    """Open a billing case: the customer gets an acknowledgement, the owner a notice."""
    settings = _load_settings()
    form = _build(
        CaseForm,
        tenant_id=tenant_id,
        name=name,
        email=email,
        locale=locale,
        category=category,
        description=description,
        subscription_id=subscription,
        invoice_id=invoice,
        amount=amount,
        currency=currency,
        priority=priority,
        owner=owner,
        opened_by=by,
    )

    async def open_case(service: Service) -> CaseView:
        opened = await service.cases.open(service.cases.prepare(form))
        return await service.cases.show(opened.case_id)  # the whole case, for the terminal

    view = _call(open_case, settings)
    console.print(
        Text.assemble("opened case ", (view.case_id, "bold"), f" (workflow {view.workflow_id})")
    )
    print_case(view, timeline=False)


@app.command()
def assign(
    case: CaseArg,
    agent: Annotated[str, typer.Option(help="Agent's email.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Give the case to an agent (they are notified)."""
    _act(case, _build(Assign, agent=agent, by=by))


@app.command()
def note(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="Internal note.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Add an internal note to the timeline."""
    _act(case, _build(AddNote, text=text, by=by))


@app.command("request-info")
def request_info(
    case: CaseArg,
    question: Annotated[str, typer.Argument(help="What the customer must send or answer.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Ask the customer for information; SLA clocks pause until they reply."""
    _act(case, _build(RequestInfo, question=question, by=by))


@app.command("customer-reply")
def customer_reply(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="The customer's reply.")],
    by: Customer_ = "customer",
) -> None:
    """Record the customer's reply; the clocks run again."""
    _act(case, _build(CustomerReply, text=text, by=by))


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
    _act(case, _build(Resolve, outcome=outcome, summary=summary, credit_amount=credit, by=by))


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
    _act(case, _build(Escalate, reason=reason, severity=severity, by=by))


@app.command("vianet-ticket")
def vianet_ticket(
    case: CaseArg,
    ticket_number: Annotated[str, typer.Argument(help="The number the 21Vianet portal gave.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record the 21Vianet ticket number after filing the request in the portal."""
    _act(case, _build(VianetTicket, ticket_number=ticket_number, by=by))


@app.command("vianet-response")
def vianet_response(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="21Vianet's answer.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record 21Vianet's answer; the case returns to the agent to resolve."""
    _act(case, _build(VianetResponse, text=text, by=by))


@app.command()
def confirm(case: CaseArg, by: Customer_ = "customer") -> None:
    """The customer confirms the resolution: the case closes with a final email."""
    _act(case, _build(Confirm, by=by))


@app.command()
def reopen(
    case: CaseArg,
    reason: Annotated[str, typer.Option(help="Why the customer is not satisfied.")],
    by: Customer_ = "customer",
) -> None:
    """Reopen a resolved case within the reopen window: back to resolution."""
    _act(case, _build(Reopen, reason=reason, by=by))


@app.command()
def withdraw(
    case: CaseArg,
    reason: Annotated[str, typer.Option(help="Why the case is withdrawn.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Withdraw the case (e.g. the customer no longer disputes it); the customer is told."""
    _act(case, _build(Withdraw, reason=reason, by=by))


@app.command()
def contact(
    case: CaseArg,
    email: Annotated[str, typer.Option(help="The customer's new billing contact email.")],
    locale: Annotated[Locale | None, typer.Option(help="Their language, if it changes.")] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Correct the customer's contact (e.g. after a bounced email)."""
    _act(case, _build(UpdateContact, email=email, locale=locale, by=by))


@app.command()
def show(case: CaseArg) -> None:
    """Print the case's state and timeline."""
    print_case(_call(lambda service: service.cases.show(case)))


@app.command()
def inbound(
    file: Annotated[Path, typer.Argument(help="the email as a .eml file (the whole message)")],
) -> None:
    """Take a customer's email as SendGrid Inbound Parse would: its thread's case moves (a reply,
    a confirmation, a reopening), or a new case opens. The same file again acts no more."""
    try:
        raw = file.read_bytes()
    except OSError as err:
        _fail(f"{file}: {err.strerror or err}")
    received = _call(lambda service: service.inbound.receive(raw), _load_settings(inbound=True))
    where = f" ({received.workflow_id})" if received.workflow_id else ""
    again = " — received before: nothing more done" if received.duplicate else ""
    console.print(plain(f"{received.outcome.value}{where}{again}"))


@app.command("inbound-watch")
def inbound_watch(
    folder: Annotated[
        Path | None, typer.Argument(help="the drop folder (default INBOUND_DIR, var/inbound)")
    ] = None,
) -> None:
    """Receive every .eml file put into the drop folder, as `inbound` does, until stopped
    (`make run` runs this). Each file moves to done/, or to failed/ with the reason beside it."""
    settings = _load_settings(inbound=True)
    where = folder or settings.inbound_dir

    async def run() -> None:
        service = await Service.connect(settings)

        async def receive(raw: bytes) -> str:
            try:
                received = await service.inbound.receive(raw)
            except Unavailable as err:
                raise TryLater(str(err)) from None
            return received.outcome.value + (
                f" ({received.workflow_id})" if received.workflow_id else ""
            )

        def report(name: str, outcome: str) -> None:
            console.print(plain(f"inbound {name}: {outcome}"))

        console.print(plain(f"watching {where} for .eml files"))
        await drop_folder.watch(where, receive, report)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except ServiceError as err:
        _fail(str(err))


# --------------------------------------------------------------------------- the workspace

users_app = typer.Typer(help="Local accounts of the web workspace (`make run`, small teams).")
app.add_typer(users_app, name="user")


EmailArg = Annotated[str, typer.Argument(help="The account's email.")]
RolesOpt = Annotated[
    list[Role], typer.Option("--role", help="agent, manager or finance (repeat for several).")
]
PasswordOpt = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="WORKSPACE_PASSWORD",
        help="At least 12 characters; asked for twice when not given (or $WORKSPACE_PASSWORD).",
    ),
]


def _accounts(action: Callable[[Users], Coroutine[Any, Any, T]]) -> T:
    """One change to the local accounts (the database only, no Temporal); a refusal is exit 1."""
    try:
        return asyncio.run(action(Users(_load_settings())))
    except ServiceError as err:
        _fail(str(err))


def _account_line(verb: str, account: Account) -> None:
    roles = ", ".join(sorted(account.person.roles))
    state = " — disabled" if account.disabled else ""
    console.print(Text.assemble(f"{verb} ", plain(account.person.email), f" ({roles}){state}"))


@users_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="Their email: what they sign in with and act as.")],
    name: Annotated[str, typer.Option(help="Their name, as the workspace shows it.")],
    role: RolesOpt,
    locale: Annotated[str, typer.Option(help="Their language: zh-CN or en-US.")] = "zh-CN",
    password: PasswordOpt = "",
) -> None:
    """Create a local account of the workspace; its password is kept as an argon2id hash.

    Exit code 2: bad input; 1: the email has an account already."""
    user = _build(NewUser, email=email, name=name, roles=role, locale=locale, password=password)
    person = _accounts(lambda users: users.add(user))
    roles = ", ".join(sorted(person.roles))
    console.print(Text.assemble("added ", plain(person.email), f" ({roles})"))


@users_app.command("list")
def user_list() -> None:
    """The local accounts: email, name, roles, language, and whether each is disabled."""
    table = Table()
    for header in ("Email", "Name", "Roles"):
        table.add_column(header, overflow="fold")
    for header in ("Language", "State", "Since (UTC)"):
        table.add_column(header, no_wrap=True)
    for account in _accounts(lambda users: users.accounts()):
        person = account.person
        table.add_row(
            plain(person.email),
            plain(person.name),
            ", ".join(sorted(person.roles)),
            person.locale.value,
            "disabled" if account.disabled else "active",
            utc_minute(account.created_at),
        )
    console.print(table)


@users_app.command("disable")
def user_disable(email: EmailArg) -> None:
    """The account signs in no more, and each of its sessions ends now (exit 1: no such account)."""
    _account_line("disabled", _accounts(lambda users: users.disable(email)))


@users_app.command("enable")
def user_enable(email: EmailArg) -> None:
    """A disabled account may sign in again (exit 1: no such account)."""
    _account_line("enabled", _accounts(lambda users: users.enable(email)))


@users_app.command("role")
def user_role(email: EmailArg, role: RolesOpt) -> None:
    """Set the account's roles: its sessions have them from their next request on."""
    _account_line("roles set:", _accounts(lambda users: users.set_roles(email, frozenset(role))))


@users_app.command("reset-password")
def user_reset_password(email: EmailArg, password: PasswordOpt = "") -> None:
    """A new password for the account: its sessions end, its failed sign-ins are forgotten.

    Exit code 2: too short; 1: no such account."""
    new = _build(NewPassword, password=password)
    _account_line("password reset:", _accounts(lambda users: users.reset_password(email, new)))


# --------------------------------------------------------------------------- managers


@app.command("setup")
def setup_command() -> None:
    """Register the custom search attributes on the Temporal namespace (idempotent)."""
    added = _call(lambda service: service.register_search_attributes())
    console.print(f"search attributes added: {', '.join(added) or 'none (all present)'}")


KindArg = Annotated[Kind, typer.Argument(help="What the id names.")]
KeyArg = Annotated[str, typer.Argument(help="The case id, invoice id or 21Vianet invoice number.")]


@app.command("retry-step")
def retry_step(kind: KindArg, key: KeyArg, by: By = DEFAULT_ACTOR) -> None:
    """Run the step a workflow is stuck on again (it needs attention), once its cause is fixed.

    The saved query needs-attention lists the workflows waiting for this."""
    answer = _call(lambda service: service.retry_step(kind, key, _build(RetryStep, by=by)))
    console.print(plain(f"{answer.workflow_id}: retrying {answer.step}"))


@app.command("skip-step")
def skip_step(
    kind: KindArg,
    key: KeyArg,
    reason: Annotated[str, typer.Option(help="Why the step is not needed any more.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Give up the step a workflow is stuck on; it goes on without it (the reason is recorded)."""
    data = _build(SkipStep, reason=reason, by=by)
    answer = _call(lambda service: service.skip_step(kind, key, data))
    console.print(plain(f"{answer.workflow_id}: skipped {answer.step}"))


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
    executions = _call(lambda service: service.list_workflows(query, limit=limit))
    console.print(plain(search.resolve_query(query), "dim"), soft_wrap=True)
    if not executions:
        console.print("no workflows match")
        return
    console.print(workflows_table(executions))


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
    receivables in collections by stage and by age (0–30, 31–60, 61–90, 90+ days past due, each
    currency apart), suspended subscriptions, and what the partner owes 21Vianet
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
        console.print(plain(f"HTML report written to {html}"), soft_wrap=True)


@app.command()
def verify() -> None:
    """Check that the database and Temporal agree: every case, collections and account row has
    its workflow with the same final status (a running workflow may be ahead of its row, never
    behind), every such workflow on the task queue has its row, and no email has been pending
    for more than 5 minutes.

    Exit code 1: a difference (listed), or Temporal or the database cannot be read."""
    try:
        result = _call(lambda service: service.verify())
    except SQLAlchemyError as err:
        reason = getattr(err, "orig", None) or err
        _fail(f"database: {reason} (is it migrated? python -m db.migrate)")
    console.print(
        f"{result.cases} cases, {result.collections} collections, {result.accounts} accounts "
        "in the database; "
        f"{result.workflows} workflows in Temporal ({result.running} running)"
    )
    if result.ok:
        console.print("no differences")
        return
    table = Table(title=f"differences: {len(result.differences)}")
    for header in ("Kind", "Id", "Problem", "Database", "Temporal"):
        table.add_column(header, overflow="fold")
    for d in result.differences:
        table.add_row(d.kind, plain(d.id), d.problem, plain(d.database), plain(d.temporal))
    console.print(table)
    raise typer.Exit(1)


# --------------------------------------------------------------------------- collections


def _collections_act(invoice: str, action: InvoiceAction) -> None:
    view = _call(lambda service: service.collections.act(invoice, action))
    print_collections(view, timeline=False)


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
    result = _call(lambda service: service.collections.report_failure(failure), settings)
    what = "started" if result is Started.STARTED else "joined the running"
    console.print(
        f"{what} collections of invoice {failure.invoice_id} "
        f"(workflow {collections_workflow_id(failure.invoice_id)})",
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
    view = _call(lambda service: service.collections.act(payment.invoice_id, payment))
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
            summary = _call(
                lambda service: service.import_failures(
                    file, concurrency=concurrency, fmt=fmt, progress=show
                ),
                settings,
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
    _collections_act(invoice, arg)


@app.command()
def fraud(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="What indicates fraud or misuse.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Report fraud or misuse: the subscriptions are suspended now and a manager is told."""
    _collections_act(invoice, _build(ReportFraud, reason=reason, by=by))


@app.command()
def promise(
    invoice: InvoiceArg,
    until: Annotated[str, typer.Option(help="Promised payment date, ISO 8601 with timezone.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record a promise to pay: the policy pauses until that date."""
    _collections_act(invoice, _build(PromiseToPay, until=until, by=by))


@app.command()
def resume(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why the pause is over (a manager's decision).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Resume a paused policy (a dispute or a promise that will not end by itself)."""
    _collections_act(invoice, _build(ResumePolicy, reason=reason, by=by))


@app.command()
def triage(
    invoice: InvoiceArg,
    decision: Annotated[
        str,
        typer.Option(
            help="no-action (the customer's reply needs nothing), or contact-confirmed (after a "
            "notice bounced, the address is right); a dispute or a promise: their own commands"
        ),
    ],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Release a suspension held for a person: a customer's reply, or an undelivered notice."""
    _collections_act(invoice, _build(TriageReply, decision=decision, by=by))


@app.command()
def waive(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why the balance is waived (manager).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Waive the balance (a manager's decision): what was suspended is reactivated; it closes."""
    _collections_act(invoice, _build(Waive, reason=reason, by=by))


@app.command("approve-suspension")
def approve_suspension(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why the suspension goes ahead (a manager).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Approve the suspension the policy asks a manager for: the subscriptions are suspended."""
    _collections_act(invoice, _build(Approve, reason=reason, by=by))


@app.command("refuse-suspension")
def refuse_suspension(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why not (a manager).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Refuse the suspension: nothing is suspended and the manager takes the invoice over."""
    _collections_act(invoice, _build(RefuseSuspension, reason=reason, by=by))


@app.command("collections-contact")
def collections_contact(
    invoice: InvoiceArg,
    email: Annotated[str, typer.Option(help="Where the invoice's notices go from now on.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Correct the collections contact after a notice bounced: an undelivered final notice is
    sent again to the new address, and the suspension waits for its delivery."""
    _collections_act(invoice, _build(CorrectContact, email=email, by=by))


@app.command("collections-show")
def collections_show(invoice: InvoiceArg) -> None:
    """Print an invoice's collections: balance, stage, next step, suspensions, timeline."""
    print_collections(_call(lambda service: service.collections.show(invoice)))


# --------------------------------------------------------------------------- accounts

TenantArg = Annotated[str, typer.Argument(help="The customer's tenant id (a GUID).")]


def print_account(view: AccountView) -> None:
    head = Table.grid(padding=(0, 2))
    attention_row(head, view.needs_attention)
    c = view.customer
    head.add_row("Customer", plain(f"{c.name} <{c.email}> · {c.locale.value}"))
    suspended = view.suspended_subscriptions
    head.add_row("Suspended", ", ".join(suspended) if suspended else "-")
    o = view.overrides
    head.add_row(
        "Overrides",
        plain(
            f"exempt from suspension: {'yes' if o.exempt_from_suspension else 'no'} · extra "
            f"grace {o.extra_grace_days} day(s) · policy {o.policy_file or 'the partner default'}"
        ),
    )
    console.print(Panel(head, title=f"Account {view.tenant_id}", expand=False))
    holds = Table("Subscription", "Reason", "Invoice", "Since", "By")
    for hold in view.holds:
        holds.add_row(
            hold.subscription_id,
            Text(hold.reason.value, style="red" if hold.reason is HoldReason.FRAUD else ""),
            hold.invoice_id,
            utc_minute(hold.placed_at),
            plain(hold.by),
        )
    console.print(holds)
    console.print(timeline_table(view.timeline, view.event_count))


@app.command("account-show")
def account_show(tenant: TenantArg) -> None:
    """Print a customer's account: its holds per subscription, overrides and timeline."""
    print_account(_call(lambda service: service.accounts.show(tenant)))


@app.command("lift-fraud")
def lift_fraud(
    tenant: TenantArg,
    reason: Annotated[str, typer.Option(help="Why the fraud hold is lifted (a manager).")],
    invoice: Annotated[
        str | None, typer.Option(help="Lift only this invoice's fraud hold (default: all).")
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Lift the account's fraud holds: what nothing else holds is reactivated."""
    data = _build(LiftFraud, reason=reason, invoice_id=invoice, by=by)
    print_account(_call(lambda service: service.accounts.lift_fraud(tenant, data)))


@app.command("account-overrides")
def account_overrides(
    tenant: TenantArg,
    reason: Annotated[str, typer.Option(help="Why this customer differs (a manager).")],
    exempt: Annotated[
        bool, typer.Option("--exempt/--not-exempt", help="Never suspend for non-payment.")
    ] = False,
    extra_grace_days: Annotated[
        int, typer.Option(help="Suspend this many days later than the policy says.")
    ] = 0,
    policy_file: Annotated[
        str | None, typer.Option(help="Another collections policy, a file in config/.")
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Set a customer's overrides (recorded with who and why); invoices that fail from now on
    start with them."""
    overrides = _build(
        AccountOverrides,
        exempt_from_suspension=exempt,
        extra_grace_days=extra_grace_days,
        policy_file=policy_file,
    )
    data = _build(SetOverrides, overrides=overrides, reason=reason, by=by)
    print_account(_call(lambda service: service.accounts.set_overrides(tenant, data)))


# --------------------------------------------------------------------------- payable to 21Vianet


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
    print_vianet_invoice(_call(lambda service: service.vianet_invoices.record(data), settings))


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
    view = _call(lambda service: service.vianet_invoices.mark_paid(invoice_number, arg))
    print_vianet_invoice(view)


@app.command("vianet-invoice-show")
def vianet_invoice_show(invoice_number: VianetArg) -> None:
    """Print a 21Vianet invoice: amount, due date, reminders, payment, timeline."""
    view = _call(lambda service: service.vianet_invoices.show(invoice_number))
    print_vianet_invoice(view)
    console.print(timeline_table(view.timeline, view.event_count))


if __name__ == "__main__":
    app()
