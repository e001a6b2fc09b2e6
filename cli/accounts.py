"""`account`: a customer tenant's subscriptions, the holds on them, and the customer's overrides."""

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
    sub_app,
    timeline_table,
)
from core.formatting import utc_minute
from core.models import AccountOverrides, AccountView, HoldReason, LiftFraud, SetOverrides

account_app = sub_app(
    "Customer accounts: what holds each subscription suspended, fraud holds, overrides."
)
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


@account_app.command()
def show(tenant: TenantArg) -> None:
    """Print a customer's account: its holds per subscription, overrides and timeline."""
    print_account(call(lambda service: service.accounts.show(tenant)))


@account_app.command("lift-fraud")
def lift_fraud(
    tenant: TenantArg,
    reason: Annotated[str, typer.Option(help="Why the fraud hold is lifted (a manager).")],
    invoice: Annotated[
        str | None, typer.Option(help="Lift only this invoice's fraud hold (default: all).")
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Lift the account's fraud holds: what nothing else holds is reactivated."""
    data = build(LiftFraud, reason=reason, invoice_id=invoice, by=by)
    print_account(call(lambda service: service.accounts.lift_fraud(tenant, data)))


@account_app.command("set-overrides")
def set_overrides(
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
    overrides = build(
        AccountOverrides,
        exempt_from_suspension=exempt,
        extra_grace_days=extra_grace_days,
        policy_file=policy_file,
    )
    data = build(SetOverrides, overrides=overrides, reason=reason, by=by)
    print_account(call(lambda service: service.accounts.set_overrides(tenant, data)))
