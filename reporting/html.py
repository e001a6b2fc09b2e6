"""The report as one self-contained HTML page: the tables, and charts drawn by plotly with its
JavaScript inlined once, so the file opens offline and can be mailed as it is."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from core.files import private_open
from core.formatting import money
from reporting.queries import AGING_BUCKETS, Aging, Report
from reporting.sections import ENGLISH, Words, heading, sections

LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 340,
    "margin": {"l": 60, "r": 20, "t": 40, "b": 60},
    "legend": {"orientation": "h", "y": -0.2},
}


def _amounts(values: list[Decimal]) -> list[float]:
    # bar heights only: every figure a person reads (labels, hover, tables) comes from the Decimal
    return [float(v) for v in values]


def _hours(values: list[Any]) -> list[float | None]:
    return [None if v is None else v.total_seconds() / 3600 for v in values]


def figures(report: Report, words: Words = ENGLISH) -> dict[str, go.Figure]:
    t = words.gettext
    cur = report.currency
    here = {"currency": cur}
    backlog = go.Figure(
        [
            go.Bar(name=t(status.value), x=[t(b) for b in report.backlog.buckets], y=row)
            for status, row in report.backlog.counts.items()
        ],
        layout={
            **LAYOUT,
            "barmode": "stack",
            "title": t("Open cases by age"),
            "yaxis_title": t("cases"),
        },
    )
    priorities = [t(row.priority.value) for row in report.sla]
    sla = go.Figure(
        [
            go.Bar(
                name=name,
                x=priorities,
                y=[None if r.percent is None else float(r.percent) for r in rates],
                text=[None if r.percent is None else f"{r.percent}%" for r in rates],
            )
            for name, rates in (
                (t("First response"), [row.first_response.attainment for row in report.sla]),
                (t("Resolution"), [row.resolution.attainment for row in report.sla]),
            )
        ],
        layout={**LAYOUT, "title": t("SLA attained (%)"), "yaxis": {"range": [0, 100]}},
    )
    by_severity = report.escalations.by_severity
    severities = [s.severity.value for s in by_severity]
    severity = go.Figure(
        [
            go.Bar(name=t("Median"), x=severities, y=_hours([s.times.median for s in by_severity])),
            go.Bar(
                name=t("90th percentile"),
                x=severities,
                y=_hours([s.times.p90 for s in by_severity]),
            ),
            go.Scatter(
                name=t("Target"),
                x=severities,
                y=_hours([s.target for s in by_severity]),
                mode="markers",
                marker={"symbol": "line-ew-open", "size": 40, "line": {"width": 3}},
            ),
        ],
        layout={
            **LAYOUT,
            "title": t("21Vianet response time (hours)"),
            "yaxis_title": t("hours"),
        },
    )
    balances = [r.balance for r in report.receivables]
    receivables = go.Figure(
        go.Bar(
            x=[f"{t(r.stage)} ({t(r.status)})" for r in report.receivables],
            y=_amounts(balances),
            text=[money(b, cur) for b in balances],
        ),
        layout={**LAYOUT, "title": t("Balance in collections by stage (%(currency)s)") % here},
    )
    nothing = Aging(cur, [Decimal("0.00")] * len(AGING_BUCKETS), [0] * len(AGING_BUCKETS))
    aged = next((a for a in report.aging if a.currency == cur), nothing)
    aging = go.Figure(
        go.Bar(
            x=[t(b) for b in aged.buckets],
            y=_amounts(aged.balances),
            text=[money(b, cur) for b in aged.balances],
        ),
        layout={**LAYOUT, "title": t("Receivables aging, days past due (%(currency)s)") % here},
    )
    e = report.exposure
    sides = [t("Owed to 21Vianet"), t("Owed by customers")]
    parts = [
        (t("Overdue"), [e.payable_overdue, e.receivable_overdue]),
        (t("Not yet due"), [e.payable - e.payable_overdue, Decimal("0.00")]),
        (t("Disputed"), [Decimal("0.00"), e.receivable_disputed]),
    ]
    exposure = go.Figure(
        [
            go.Bar(name=name, x=sides, y=_amounts(values), text=[money(v, cur) for v in values])
            for name, values in parts
        ],
        layout={**LAYOUT, "barmode": "stack", "title": t("Exposure (%(currency)s)") % here},
    )
    months = report.csat.by_month
    satisfaction = go.Figure(
        go.Bar(
            x=[m.label for m in months],
            y=[None if m.average is None else float(m.average) for m in months],
            text=[f"{m.average} ({m.ratings})" for m in months],
        ),
        layout={
            **LAYOUT,
            "title": t("Average rating by month (ratings)"),
            "yaxis": {"range": [0, 5]},
        },
    )
    return {
        "csat-month": satisfaction,
        "backlog": backlog,
        "sla": sla,
        "severity": severity,
        "receivables": receivables,
        "aging": aging,
        "exposure": exposure,
    }


def render_html(report: Report, templates_dir: Path) -> str:
    env = Environment(
        loader=FileSystemLoader(templates_dir / "report"),
        autoescape=select_autoescape(enabled_extensions=("html",)),
        undefined=StrictUndefined,
    )
    charts = {
        key: Markup(
            figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"chart-{key}",
                config={"displaylogo": False, "responsive": True},
            )
        )
        for key, figure in figures(report).items()
    }
    return env.get_template("report.html").render(
        heading=heading(report),
        sections=sections(report),
        charts=charts,
        plotly_js=Markup(get_plotlyjs()),
    )


def chart_data(report: Report, words: Words) -> dict[str, str]:
    """Each chart as plotly's JSON (its data and layout), for a page that draws them with its own
    copy of plotly.js and no inline script (the workspace's report page)."""
    # "<" escaped: a name in a chart cannot close the <script> block the JSON sits in
    return {
        key: figure.to_json().replace("<", "\\u003c")
        for key, figure in figures(report, words).items()
    }


def write_html(report: Report, templates_dir: Path, path: Path) -> None:
    with private_open(path) as out:  # customer names and amounts
        out.write(render_html(report, templates_dir))
