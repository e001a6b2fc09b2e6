"""`vianet`: the partner's own invoices from 21Vianet, and finance's reminders to pay them."""

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
from core.models import MarkVianetPaid, RecordVianetInvoice, VianetInvoiceView

vianet_app = sub_app("Invoices 21Vianet sends the partner: record them, mark them paid.")
VianetArg = Annotated[str, typer.Argument(help="21Vianet's invoice number.")]


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


@vianet_app.command()
def record(
    invoice_number: VianetArg,
    amount: Annotated[str, typer.Option(help="Amount due to 21Vianet, e.g. 1286400.00.")],
    due_date: Annotated[str, typer.Option(help="Due date, YYYY-MM-DD (China Standard Time).")],
    currency: Annotated[str, typer.Option(help="21Vianet bills its partners in CNY.")] = "CNY",
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record an invoice 21Vianet sent the partner: finance is reminded before the due date and
    on it, a manager is told the day after if it is not marked paid (`vianet pay`).

    Exit code 2: bad input; 1: refused (already recorded)."""
    settings = settings_or_exit()
    data = build(
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
    print_vianet_invoice(call(lambda service: service.vianet_invoices.record(data), settings))


@vianet_app.command()
def pay(
    invoice_number: VianetArg,
    reference: Annotated[str, typer.Option(help="The bank transfer's reference.")],
    paid_at: Annotated[
        str | None, typer.Option(help="When it was paid, ISO 8601 with timezone (default: now).")
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Mark a 21Vianet invoice paid: its reminders stop and it is closed.

    Exit code 2: bad input; 1: refused (not recorded, already paid, paid_at in the future)."""
    arg = build(MarkVianetPaid, paid_at=paid_at or utc_now(), reference=reference, by=by)
    view = call(lambda service: service.vianet_invoices.mark_paid(invoice_number, arg))
    print_vianet_invoice(view)


@vianet_app.command()
def show(invoice_number: VianetArg) -> None:
    """Print a 21Vianet invoice: amount, due date, reminders, payment, timeline."""
    view = call(lambda service: service.vianet_invoices.show(invoice_number))
    print_vianet_invoice(view)
    console.print(timeline_table(view.timeline, view.event_count))
