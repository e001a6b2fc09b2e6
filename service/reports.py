"""The managers' report as a page of the workspace: the figures `reporting` computes (the same as
`starter.py report` and its HTML file), its tables and charts in the reader's language."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from plotly.offline import get_plotlyjs

from core.settings import Settings
from reporting.html import chart_data
from reporting.sections import Section, Words, heading, sections
from service import load_report

__all__ = ["ReportPage", "Section", "Words", "plotly_js", "report_page"]


@dataclass(frozen=True)
class ReportPage:
    heading: str
    sections: list[Section]
    charts: dict[str, str]  # a section's key -> its chart, as plotly's JSON


def report_page(
    settings: Settings, *, now: datetime, days: int, currency: str, words: Words
) -> ReportPage:
    """The report from the settings' database (no Temporal; blocking: run it in a thread)."""
    report = load_report(settings, now=now, days=days, currency=currency)
    return ReportPage(heading(report, words), sections(report, words), chart_data(report, words))


def plotly_js() -> str:
    """The plotly.js the charts are drawn with (the report page loads it as a script file)."""
    return str(get_plotlyjs())
