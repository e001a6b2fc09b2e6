"""`workflow`: what an operator does across workflows: find them, unstick them, check them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import WorkflowExecution

from cli.common import DEFAULT_ACTOR, By, build, call, console, fail, plain, sub_app
from core import search
from core.models import RetryStep, SkipStep
from service import Kind

workflow_app = sub_app(
    "Across workflows: list them as the Temporal UI filters, retry or skip a failed step, "
    "check the database against Temporal, register the search attributes."
)
KindArg = Annotated[Kind, typer.Argument(help="What the id names.")]
KeyArg = Annotated[str, typer.Argument(help="The case id, invoice id or 21Vianet invoice number.")]


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


@workflow_app.command("list")
def list_workflows(
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
    executions = call(lambda service: service.list_workflows(query, limit=limit))
    console.print(plain(search.resolve_query(query), "dim"), soft_wrap=True)
    if not executions:
        console.print("no workflows match")
        return
    console.print(workflows_table(executions))


@workflow_app.command("retry-step")
def retry_step(kind: KindArg, key: KeyArg, by: By = DEFAULT_ACTOR) -> None:
    """Run the step a workflow is stuck on again (it needs attention), once its cause is fixed.

    `workflow list -q needs-attention` lists the workflows waiting for this."""
    answer = call(lambda service: service.retry_step(kind, key, build(RetryStep, by=by)))
    console.print(plain(f"{answer.workflow_id}: retrying {answer.step}"))


@workflow_app.command("skip-step")
def skip_step(
    kind: KindArg,
    key: KeyArg,
    reason: Annotated[str, typer.Option(help="Why the step is not needed any more.")],
    by: By = DEFAULT_ACTOR,
) -> None:
    """Give up the step a workflow is stuck on; it goes on without it (the reason is recorded)."""
    data = build(SkipStep, reason=reason, by=by)
    answer = call(lambda service: service.skip_step(kind, key, data))
    console.print(plain(f"{answer.workflow_id}: skipped {answer.step}"))


@workflow_app.command()
def verify() -> None:
    """Check that the database and Temporal agree: every case, collections and account row has
    its workflow with the same final status (a running workflow may be ahead of its row, never
    behind), every such workflow on the task queue has its row, and no email has been pending
    for more than 5 minutes.

    Exit code 1: a difference (listed), or Temporal or the database cannot be read."""
    try:
        result = call(lambda service: service.verify())
    except SQLAlchemyError as err:
        reason = getattr(err, "orig", None) or err
        fail(f"database: {reason} (is it migrated? python -m db.migrate)")
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


@workflow_app.command()
def setup() -> None:
    """Register the custom search attributes on the Temporal namespace (idempotent)."""
    added = call(lambda service: service.register_search_attributes())
    console.print(f"search attributes added: {', '.join(added) or 'none (all present)'}")
