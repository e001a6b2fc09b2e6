"""`import`: files from the billing system, many lines at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cli.common import DEFAULT_ACTOR, By, call, console, fail, plain, settings_or_exit, sub_app
from core.pace import Pace
from intake.bulk import ImportAborted, ImportSummary
from intake.failure_file import FailureFileError, FileFormat, detect_format
from intake.statements import StatementError
from service.statements import StatementAborted, StatementSummary

# a bulk import's pace (core/pace.py), the same option on both imports
PaceOption = Annotated[
    float,
    typer.Option(
        min=0,
        help="At most so many a second, to leave people working meanwhile their share of a "
        "small machine (0: as fast as --concurrency allows).",
    ),
]

import_app = sub_app(
    "Files from the billing system and the bank: a billing run's failed payments, a bank "
    "statement's payments."
)


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


@import_app.command()
def failures(
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
    pace: PaceOption = 0,
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
    settings = settings_or_exit()
    try:
        fmt = detect_format(file, fmt)
    except FailureFileError as err:
        fail(str(err), code=2)
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
            summary = call(
                lambda service: service.import_failures(
                    file, concurrency=concurrency, fmt=fmt, progress=show, pace=Pace(pace)
                ),
                settings,
            )
        except FailureFileError as err:
            bar.stop()
            fail(str(err), code=2)
        except ImportAborted as err:
            bar.stop()
            _print_summary(file, err.summary)
            fail(f"{err} — run the import again (lines already reported only join)")
    _print_summary(file, summary)
    if summary.rejected:
        raise typer.Exit(1)


def _print_statement(summary: StatementSummary) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_row("bank layout", plain(f"{summary.layout} ({summary.bank}), {summary.encoding}"))
    table.add_row("rows read", f"{summary.rows:,}")
    table.add_row("money out (skipped)", f"{summary.debits:,}")
    table.add_row("matched", f"{summary.matched:,}")
    table.add_row("ambiguous (finance queue)", f"{summary.ambiguous:,}")
    table.add_row("unmatched (finance queue)", f"{summary.unmatched:,}")
    table.add_row("overpaid (rest in the queue)", f"{summary.overpaid:,}")
    table.add_row("payment refused (queue)", f"{summary.refused:,}")
    table.add_row("duplicates (imported before)", f"{summary.duplicates:,}")
    table.add_row("rejected rows", f"{summary.rejected_count:,}")
    table.add_row("payments recorded", f"{summary.payments:,} · {summary.paid:,.2f}")
    console.print(Panel(table, title=plain(f"Statement {summary.file_name}"), expand=False))
    for rejected in summary.rejected:
        console.print(plain(f"row {rejected.row}: {rejected.reason}"), soft_wrap=True)


@import_app.command()
def statement(
    file: Annotated[
        Path, typer.Argument(help="The bank's statement export: .csv or .xlsx.", dir_okay=False)
    ],
    by: By = DEFAULT_ACTOR,
    concurrency: Annotated[
        int, typer.Option(min=1, max=500, help="Payments recorded at the same time.")
    ] = 20,
    pace: PaceOption = 0,
) -> None:
    """Import a bank statement: each credit line is matched to open invoices and recorded as
    their payment; the rest waits in the workspace's finance queue (/statements).

    The layout (ICBC, BOC, CCB, CMB, or one mapped in BANK_LAYOUTS_FILE) is found by the header
    row, the encoding (UTF-8 or GBK) by the bytes; see docs/bank-statements.md. Importing the same
    statement again records nothing new (duplicates). Exit code 0: imported (lines may wait in
    the queue); 1: some rows rejected, or Temporal failed (run it again); 2: the file is refused
    (unknown layout or encoding) and nothing was read.
    """
    settings = settings_or_exit()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(file.name, total=None, counts="")

        def show(s: StatementSummary) -> None:
            counts = (
                f"matched {s.matched} · ambiguous {s.ambiguous} · unmatched {s.unmatched} · "
                f"duplicates {s.duplicates}"
            )
            bar.update(task, total=s.expected_rows, completed=s.rows, counts=counts)

        try:
            summary = call(
                lambda service: service.statements.import_file(
                    file, by=by, concurrency=concurrency, progress=show, pace=Pace(pace)
                ),
                settings,
            )
        except StatementError as err:
            bar.stop()
            fail(str(err), code=2)
        except StatementAborted as err:
            bar.stop()
            _print_statement(err.summary)
            fail(f"{err} — run the import again (what was recorded is not recorded twice)")
    _print_statement(summary)
    if summary.rejected_count:
        raise typer.Exit(1)
