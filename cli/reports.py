"""`report`: the managers' figures, from the database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from cli.common import console, fail, plain, settings_or_exit, sub_app, utc_now
from reporting.html import write_html
from reporting.terminal import print_report
from service import load_report

report_app = sub_app("The managers' report: backlog, SLA, escalations, receivables, payables.")


@report_app.command()
def show(
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
        fail("invalid input: currency: must be an ISO code of 3 capital letters, e.g. CNY", 2)
    settings = settings_or_exit()
    try:
        result = load_report(settings, now=utc_now(), days=days, currency=currency)
    except SQLAlchemyError as err:
        reason = getattr(err, "orig", None) or err
        fail(f"database: {reason} (is it migrated? python -m db.migrate)")
    print_report(result, console)
    if html is not None:
        write_html(result, settings.templates_dir, html)
        console.print(plain(f"HTML report written to {html}"), soft_wrap=True)
