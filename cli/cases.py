"""`case`: a billing case from opening to closing, as the support agent works it."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cli.common import (
    DEFAULT_ACTOR,
    By,
    ByCustomer,
    attention_row,
    build,
    call,
    console,
    plain,
    settings_or_exit,
    sub_app,
    timeline_table,
)
from core.formatting import money, utc_minute
from core.ids import new_ulid
from core.models import (
    AddNote,
    Assign,
    CaseForm,
    CaseView,
    Category,
    Confirm,
    CustomerReply,
    Escalate,
    LinkCase,
    Locale,
    MergeCase,
    Outcome,
    Priority,
    Reopen,
    Reply,
    RequestInfo,
    Resolve,
    Severity,
    UnlinkCase,
    UpdateContact,
    VianetResponse,
    VianetTicket,
    Withdraw,
)
from core.ui import CATEGORY_LABELS
from intake.mail import Attachment
from service import Service
from service.cases import CaseAction
from service.workspace import CaseRow

case_app = sub_app("Billing cases: open, work, escalate to 21Vianet, resolve, close.")
CaseArg = Annotated[str, typer.Argument(help="The case id, e.g. BC-20261124-7F3A9C.")]


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
    if view.merged_into:
        head.add_row("Merged into", view.merged_into)
    if view.merged_cases:
        head.add_row("Merged in", ", ".join(view.merged_cases))
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


def _act(case_id: str, action: CaseAction) -> None:
    print_case(call(lambda service: service.cases.act(case_id, action)), timeline=False)


@case_app.command("open")
def open_case(
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
    settings = settings_or_exit()
    form = build(
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

    async def open_and_show(service: Service) -> CaseView:
        opened = await service.cases.open(service.cases.prepare(form))
        return await service.cases.show(opened.case_id)  # the whole case, for the terminal

    view = call(open_and_show, settings)
    console.print(
        Text.assemble("opened case ", (view.case_id, "bold"), f" (workflow {view.workflow_id})")
    )
    print_case(view, timeline=False)


@case_app.command()
def show(case: CaseArg) -> None:
    """Print the case's state and timeline."""
    print_case(call(lambda service: service.cases.show(case)))


@case_app.command()
def assign(
    case: CaseArg,
    agent: Annotated[str, typer.Option(help="Agent's email.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Give the case to an agent (they are notified)."""
    _act(case, build(Assign, agent=agent, by=by))


@case_app.command()
def note(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="Internal note.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Add an internal note to the timeline."""
    _act(case, build(AddNote, text=text, by=by))


@case_app.command()
def reply(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="The reply, in the agent's words.")],
    subject: Annotated[
        str | None,
        typer.Option(help="Subject line (default: Re: the thread's; keeps the case id)."),
    ] = None,
    locale: Annotated[
        Locale | None, typer.Option(help="Write in this language (default: the customer's).")
    ] = None,
    attach: Annotated[
        list[Path] | None, typer.Option(help="A file to attach (repeat for more).", exists=True)
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Reply to the customer: the thread's next email (SLA clocks keep running)."""
    answer = build(Reply, text=text, subject=subject, locale=locale, by=by)
    files = [
        Attachment(path.name, mimetypes.guess_type(path.name)[0] or "", path.read_bytes())
        for path in attach or []
    ]
    key = new_ulid()
    print_case(
        call(lambda service: service.replies.send(case, answer, files, key=key)), timeline=False
    )


@case_app.command("request-info")
def request_info(
    case: CaseArg,
    question: Annotated[str, typer.Argument(help="What the customer must send or answer.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Ask the customer for information; SLA clocks pause until they reply."""
    _act(case, build(RequestInfo, question=question, by=by))


@case_app.command("customer-reply")
def customer_reply(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="The customer's reply.")],
    by: ByCustomer = "customer",
) -> None:
    """Record the customer's reply; the clocks run again."""
    _act(case, build(CustomerReply, text=text, by=by))


@case_app.command()
def escalate(
    case: CaseArg,
    reason: Annotated[str, typer.Option(help="Why the partner cannot resolve it alone.")],
    severity: Annotated[
        Severity, typer.Option(help="A critical (2 h), B moderate (4 h), C minimal (8 h).")
    ] = Severity.C,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Escalate to 21Vianet: prints the request to file in the portal; the customer is told."""
    _act(case, build(Escalate, reason=reason, severity=severity, by=by))


@case_app.command("vianet-ticket")
def vianet_ticket(
    case: CaseArg,
    ticket_number: Annotated[str, typer.Argument(help="The number the 21Vianet portal gave.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record the 21Vianet ticket number after filing the request in the portal."""
    _act(case, build(VianetTicket, ticket_number=ticket_number, by=by))


@case_app.command("vianet-response")
def vianet_response(
    case: CaseArg,
    text: Annotated[str, typer.Argument(help="21Vianet's answer.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record 21Vianet's answer; the case returns to the agent to resolve."""
    _act(case, build(VianetResponse, text=text, by=by))


@case_app.command()
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
    _act(case, build(Resolve, outcome=outcome, summary=summary, credit_amount=credit, by=by))


@case_app.command()
def confirm(case: CaseArg, by: ByCustomer = "customer") -> None:
    """The customer confirms the resolution: the case closes with a final email."""
    _act(case, build(Confirm, by=by))


@case_app.command()
def reopen(
    case: CaseArg,
    reason: Annotated[str, typer.Option(help="Why the customer is not satisfied.")],
    by: ByCustomer = "customer",
) -> None:
    """Reopen a resolved case within the reopen window: back to resolution."""
    _act(case, build(Reopen, reason=reason, by=by))


@case_app.command()
def withdraw(
    case: CaseArg,
    reason: Annotated[str, typer.Option(help="Why the case is withdrawn.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Withdraw the case (e.g. the customer no longer disputes it); the customer is told."""
    _act(case, build(Withdraw, reason=reason, by=by))


@case_app.command()
def contact(
    case: CaseArg,
    email: Annotated[str, typer.Option(help="The customer's new billing contact email.")],
    locale: Annotated[Locale | None, typer.Option(help="Their language, if it changes.")] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Correct the customer's contact (e.g. after a bounced email)."""
    _act(case, build(UpdateContact, email=email, locale=locale, by=by))


@case_app.command()
def merge(
    case: CaseArg,
    into: Annotated[str, typer.Option(help="The case the duplicate's request continues under.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Merge a duplicate into another open case of the same customer: it closes (merged), the
    customer gets one email naming the other case, its later replies reach that case."""
    form = build(MergeCase, into=into, by=by)
    print_case(call(lambda service: service.cases.merge(case, form)), timeline=False)


OtherArg = Annotated[str, typer.Argument(help="The other case's id.")]


@case_app.command()
def link(case: CaseArg, other: OtherArg, by: By = DEFAULT_ACTOR) -> None:
    """Link two related cases, both ways (each page shows the other; no email)."""
    _print_links(
        case, call(lambda service: service.links.link(case, build(LinkCase, other=other, by=by)))
    )


@case_app.command()
def unlink(case: CaseArg, other: OtherArg, by: By = DEFAULT_ACTOR) -> None:
    """Undo a link between two cases, both ways."""
    action = build(UnlinkCase, other=other, by=by)
    _print_links(case, call(lambda service: service.links.unlink(case, action)))


def _print_links(case_id: str, linked: list[CaseRow]) -> None:
    table = Table("Case", "Status", "Customer", title=f"Cases linked to {case_id}")
    for row in linked:
        table.add_row(row.case_id, row.status, plain(row.customer_name))
    console.print(table)
