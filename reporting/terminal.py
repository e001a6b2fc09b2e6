"""The report in the terminal: one rich table per section."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from reporting.queries import Report
from reporting.sections import Section, heading, sections


def section_table(section: Section) -> Table:
    table = Table(
        title=section.title,
        caption=section.note or None,
        show_footer=bool(section.footer),
        title_justify="left",
    )
    footer = section.footer or [""] * len(section.columns)
    for i, (name, total) in enumerate(zip(section.columns, footer, strict=True)):
        figure = i >= section.text_columns
        table.add_column(
            name, footer=Text(total), justify="right" if figure else "left", overflow="fold"
        )
    for row in section.rows:
        # Text, not markup: a customer's name may hold square brackets
        table.add_row(*(Text(cell) for cell in row))
    return table


def print_report(report: Report, console: Console) -> None:
    console.print(f"[bold]{heading(report)}[/bold]", soft_wrap=True)
    for section in sections(report):
        console.print()
        console.print(section_table(section))
