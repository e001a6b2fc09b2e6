"""`fapiao`: the fapiao issued per bill (finance records them), and finance's fapiao tasks on
cases: record the number, or say the buyer must confirm the red-letter information."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import DEFAULT_ACTOR, By, build, call, console, plain, sub_app
from core.models import BuyerMustConfirm, FapiaoRecorded, RecordFapiao

fapiao_app = sub_app("Fapiao (数电票): record those of a bill, settle finance's fapiao tasks.")
Number = Annotated[str, typer.Option("--number", help="The fapiao number: 数电票, 20 digits.")]
CaseArg = Annotated[str, typer.Argument(help="The case id.")]


@fapiao_app.command()
def record(
    invoice_id: Annotated[str, typer.Option("--invoice", help="The bill (invoice id).")],
    number: Number,
    issued_on: Annotated[str, typer.Option(help="Issue date, YYYY-MM-DD.")],
    buyer_name: Annotated[str, typer.Option(help="The buyer's name (抬头).")],
    buyer_tax_id: Annotated[str, typer.Option(help="The buyer's tax id (税号).")],
    kind: Annotated[str, typer.Option(help="blue, or red (reverses a blue one).")] = "blue",
    reverses: Annotated[
        str | None, typer.Option(help="A red-letter fapiao: the blue fapiao it reverses.")
    ] = None,
    in_full: Annotated[
        bool, typer.Option(help="A red-letter fapiao reversing the blue one in full.")
    ] = False,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Record a fapiao of a bill: a credit on a bill with a blue fapiao not reversed in full
    waits for the red-letter fapiao before the customer is told.

    Exit code 2: bad input (naming the field); 1: refused (number recorded already, reverses a
    fapiao that is not the bill's blue one)."""
    data = build(
        RecordFapiao,
        fapiao_number=number,
        invoice_id=invoice_id,
        kind=kind,
        issued_on=issued_on,
        buyer_name=buyer_name,
        buyer_tax_id=buyer_tax_id,
        reverses=reverses,
        in_full=in_full,
        recorded_by=by,
    )
    call(lambda service: service.fapiao.record(data))
    console.print(
        plain(f"fapiao {data.fapiao_number} ({data.kind.value}) recorded for bill {invoice_id}")
    )


@fapiao_app.command("list")
def list_(
    invoice_id: Annotated[str, typer.Option("--invoice", help="The bill (invoice id).")],
) -> None:
    """The fapiao recorded for a bill."""
    found = call(lambda service: service.fapiao.of_bill(invoice_id))
    if not found:
        console.print(plain(f"no fapiao recorded for bill {invoice_id}"))
    for f in found:  # one line each: a number is never wrapped
        kind = f.kind.value + (" in full" if f.in_full else "")
        reverses = f" reverses {f.reverses}" if f.reverses else ""
        case = f" case {f.case_id}" if f.case_id else ""
        console.print(
            plain(
                f"{f.fapiao_number}  {kind}  {f.issued_on.isoformat()}  {f.buyer_name} "
                f"{f.buyer_tax_id}{reverses}{case}"
            ),
            soft_wrap=True,
        )


@fapiao_app.command()
def done(
    case_id: CaseArg,
    number: Number,
    red_number: Annotated[
        str | None,
        typer.Option(help="A reissue: the red-letter fapiao that reversed the old one."),
    ] = None,
    by: By = DEFAULT_ACTOR,
) -> None:
    """Finance records the fapiao of a case's task (the new one, or the red-letter one): the
    case goes on (a credit's resolution is sent to the customer with it)."""
    data = build(FapiaoRecorded, fapiao_number=number, red_fapiao_number=red_number, by=by)
    view = call(lambda service: service.fapiao.record_on_case(case_id, data))
    console.print(plain(f"case {case_id}: {view.status.value}"))


@fapiao_app.command("buyer-confirms")
def buyer_confirms(case_id: CaseArg, by: By = DEFAULT_ACTOR) -> None:
    """The red-letter information waits for the buyer's confirmation in the tax system: the
    customer is asked, and reminded on working days."""
    data = build(BuyerMustConfirm, by=by)
    view = call(lambda service: service.fapiao.buyer_must_confirm(case_id, data))
    console.print(plain(f"case {case_id}: {view.status.value}"))
