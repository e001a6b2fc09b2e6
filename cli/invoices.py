"""`invoice`: one unpaid invoice through the collections policy, as finance and managers work it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cli.common import (
    DEFAULT_ACTOR,
    By,
    attention_row,
    build,
    call,
    console,
    plain,
    settings_or_exit,
    sub_app,
    timeline_table,
    utc_now,
)
from core.formatting import money, utc_minute
from core.ids import collections_workflow_id
from core.models import (
    BillingFailure,
    CollectionsView,
    CorrectContact,
    Customer,
    Locale,
    OpenDispute,
    PaymentReceived,
    PromiseToPay,
    ReportFraud,
    ResumePolicy,
    TriageReply,
    Waive,
)
from service import Started
from service.collections import Approve, InvoiceAction, RefuseSuspension

invoice_app = sub_app(
    "Unpaid invoices in collections: failed payments, payments, disputes, promises, "
    "suspension approvals, waivers."
)
InvoiceArg = Annotated[str, typer.Argument(help="The invoice id, e.g. G000123456.")]


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


def _act(invoice: str, action: InvoiceAction) -> None:
    view = call(lambda service: service.collections.act(invoice, action))
    print_collections(view, timeline=False)


@invoice_app.command()
def fail(
    invoice: InvoiceArg,
    failure_id: Annotated[str, typer.Option(help="The billing system's id of this failure.")],
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
    settings = settings_or_exit()
    customer = build(Customer, tenant_id=tenant_id, name=name, email=email, locale=locale)
    failure = build(
        BillingFailure,
        failure_id=failure_id,
        invoice_id=invoice,
        customer=customer,
        subscription_ids=subscription,
        amount_due=amount,
        currency=currency,
        failed_at=failed_at or utc_now(),
        reason=reason,
    )
    result = call(lambda service: service.collections.report_failure(failure), settings)
    what = "started" if result is Started.STARTED else "joined the running"
    console.print(
        f"{what} collections of invoice {failure.invoice_id} "
        f"(workflow {collections_workflow_id(failure.invoice_id)})",
        soft_wrap=True,
    )


@invoice_app.command()
def pay(
    invoice: InvoiceArg,
    payment_id: Annotated[str, typer.Option(help="The billing system's id of this payment.")],
    amount: Annotated[str, typer.Option(help="Amount received, e.g. 5000.00.")],
    currency: Annotated[str, typer.Option(help="ISO currency code.")] = "CNY",
    received_at: Annotated[
        str | None,
        typer.Option(help="When it was received, ISO 8601 with timezone (default: now)."),
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Who records it.")] = "billing-system",
) -> None:
    """Record a payment (partial, full or over: what exceeds the balance is kept as the customer's
    credit); the same id with the same amount counts once.

    A payment for an invoice whose collections ended (a second transfer) is the customer's
    credit. Exit code 2: bad input; 1: refused (not in collections, other currency, the same id
    with another amount)."""
    payment = build(
        PaymentReceived,
        payment_id=payment_id,
        invoice_id=invoice,
        amount=amount,
        currency=currency,
        received_at=received_at or utc_now(),
        by=by,
    )
    view = call(lambda service: service.collections.act(payment.invoice_id, payment))
    cur = view.currency
    console.print(
        f"invoice {view.invoice_id}: balance {money(view.balance, cur)} "
        f"(paid {money(view.paid, cur)} of {money(view.amount_due, cur)}) · "
        f"status {view.status.value}",
        soft_wrap=True,
    )
    if view.overpayment is not None and view.overpayment.payment_id == payment.payment_id:
        kept = money(view.overpayment.credit, cur)
        console.print(f"{kept} kept as the customer's credit (docs/finance.md)", soft_wrap=True)


@invoice_app.command()
def show(invoice: InvoiceArg) -> None:
    """Print an invoice's collections: balance, stage, next step, suspensions, timeline."""
    print_collections(call(lambda service: service.collections.show(invoice)))


@invoice_app.command()
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
    arg = build(OpenDispute, case_id=case, description=description, disputed_amount=amount, by=by)
    _act(invoice, arg)


@invoice_app.command()
def promise(
    invoice: InvoiceArg,
    until: Annotated[str, typer.Option(help="Promised payment date, ISO 8601 with timezone.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record a promise to pay: the policy pauses until that date."""
    _act(invoice, build(PromiseToPay, until=until, by=by))


@invoice_app.command()
def resume(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why the pause is over (a manager's decision).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Resume a paused policy (a dispute or a promise that will not end by itself)."""
    _act(invoice, build(ResumePolicy, reason=reason, by=by))


@invoice_app.command()
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
    _act(invoice, build(TriageReply, decision=decision, by=by))


@invoice_app.command()
def contact(
    invoice: InvoiceArg,
    email: Annotated[str, typer.Option(help="Where the invoice's notices go from now on.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Correct the collections contact after a notice bounced: an undelivered final notice is
    sent again to the new address, and the suspension waits for its delivery."""
    _act(invoice, build(CorrectContact, email=email, by=by))


@invoice_app.command()
def fraud(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="What indicates fraud or misuse.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Report fraud or misuse: the subscriptions are suspended now and a manager is told."""
    _act(invoice, build(ReportFraud, reason=reason, by=by))


@invoice_app.command("approve-suspension")
def approve_suspension(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why the suspension goes ahead (a manager).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Approve the suspension the policy asks a manager for: the subscriptions are suspended."""
    _act(invoice, build(Approve, reason=reason, by=by))


@invoice_app.command("refuse-suspension")
def refuse_suspension(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why not (a manager).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Refuse the suspension: nothing is suspended and the manager takes the invoice over."""
    _act(invoice, build(RefuseSuspension, reason=reason, by=by))


@invoice_app.command()
def waive(
    invoice: InvoiceArg,
    reason: Annotated[str, typer.Option(help="Why the balance is waived (manager).")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Waive the balance (a manager's decision): what was suspended is reactivated; it closes."""
    _act(invoice, build(Waive, reason=reason, by=by))
