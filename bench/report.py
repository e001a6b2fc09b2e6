"""The results as a table on the terminal and as JSON under var/bench/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.env import ROOT

OUT = ROOT / "var" / "bench"


@dataclass
class Row:
    scenario: str
    measure: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None  # None: no target

    def cells(self) -> list[str]:
        verdict = "" if self.met is None else ("met" if self.met else "MISSED")
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        return [self.scenario, self.measure, self.value, self.baseline, ratio, self.target, verdict]


HEADER = ["#", "measure", "ours", "bare / baseline", "ratio", "target", ""]


def table(rows: list[Row]) -> str:
    """A Markdown table: readable on the terminal, pasted as is into docs/performance.md."""
    body = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in body) for i in range(len(HEADER))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(HEADER), rule, *(line(cells) for cells in body[1:])])


def write(result: dict[str, Any]) -> Path:
    """var/bench/bench-<UTC time>.json, and var/bench/latest.json pointing at the same data."""
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = OUT / f"bench-{stamp}.json"
    text = json.dumps(result, indent=2, default=str)
    path.write_text(text + "\n")
    (OUT / "latest.json").write_text(text + "\n")
    return path
