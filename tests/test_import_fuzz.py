"""Hostile failures files, generated: whatever a line holds (random bytes, NUL, stray quotes and
carriage returns, a BOM mid-file, JSON nested thousands deep or numbers of thousands of digits,
formulas, lines over 64 KiB, cut-off last lines, repeats), the import reads on, rejects that line
with a reason, and reports only valid failures; the rejected file opens safely in a spreadsheet.

tests/test_import.py runs the import against Temporal; here the report function stands in for it,
so many files can be tried quickly.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.models import BillingFailure
from intake.bulk import run_import
from intake.failure_file import COLUMNS, FORMULA_START, MAX_LINE_BYTES, FileFormat
from tests.hostile import texts, values_for
from tests.intake_support import failure_fields

NESTED = b"[" * 50_000  # json.loads recurses once per level
HUGE_NUMBER = b'{"amount_due": ' + b"9" * 5_000 + b"}"  # over Python's int conversion limit
SPECIAL_LINES = [
    NESTED,
    b'{"failure_id": ' * 20_000,
    HUGE_NUMBER,
    b"\x00\x00",
    b'"unbalanced,quote',
    b"a\rb,c",
    b"\xef\xbb\xbffailure_id,invoice_id",
    b"\xff\xfe\xfd",
    b"=cmd|' /C calc'!A0,@SUM(1),+1,-1",
    b"x" * (MAX_LINE_BYTES + 1),
    b"NaN",
    b"[]",
    b"null",
    b"   ",
]


# a lone surrogate (hostile text has them) written as a broken exporter would: not UTF-8
SURROGATES = "surrogatepass"


def csv_line(fields: dict[str, Any]) -> bytes:
    cells = [";".join(map(str, v)) if isinstance(v, list) else str(v) for v in fields.values()]
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue().encode("utf-8", SURROGATES)


def json_line(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode("utf-8", SURROGATES)


@st.composite
def lines(draw: st.DrawFn, fmt: FileFormat) -> bytes:
    """One line of a failures file (it may hold line breaks itself: then it is several)."""
    invoice = f"G{draw(st.integers(0, 5))}"
    fields = failure_fields(invoice, f"{invoice}-F{draw(st.integers(0, 9))}")
    encode = csv_line if fmt is FileFormat.CSV else json_line
    kind = draw(st.sampled_from(["valid", "changed", "changed", "special", "bytes", "cut"]))
    if kind == "changed":
        column = draw(st.sampled_from(COLUMNS))
        fields[column] = draw(st.one_of(values_for(column), texts))
    if kind == "special":
        return draw(st.sampled_from(SPECIAL_LINES))
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    line = encode(fields)
    if kind == "cut":
        return line[: draw(st.integers(0, len(line)))]
    return line


def records(data: bytes, fmt: FileFormat) -> int:
    """How many records the file holds: its non-blank lines, the CSV header not counted."""
    physical = data.split(b"\n")
    if physical and physical[-1] == b"":
        physical.pop()
    if physical:  # a BOM opens line 1, as Excel writes it
        physical[0] = physical[0].removeprefix(b"\xef\xbb\xbf")
    if fmt is FileFormat.CSV:
        physical = physical[1:]
    count = 0
    for line in physical:
        text = line.removesuffix(b"\r").decode("utf-8", "replace")
        if len(line) > MAX_LINE_BYTES or "\ufffd" in text or text.strip():
            count += 1
    return count


@pytest.mark.parametrize("fmt", list(FileFormat))
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_file_is_read_to_the_end(
    fmt: FileFormat, tmp_path: Path, data: st.DataObject
) -> None:
    body = data.draw(st.lists(lines(fmt), min_size=1, max_size=12), label="lines")
    ending = data.draw(st.sampled_from([b"\n", b"\r\n"]), label="line ending")
    header = [",".join(COLUMNS).encode()] if fmt is FileFormat.CSV else []
    content = ending.join([*header, *body]) + data.draw(st.sampled_from([b"", ending]))
    source = tmp_path / f"{uuid.uuid4().hex}.{fmt.value}"
    source.write_bytes(content)
    reported: list[BillingFailure] = []

    async def report(failure: BillingFailure) -> str:
        assert isinstance(failure, BillingFailure)
        reported.append(failure)
        return "started"

    summary = await run_import(source, report, fmt=fmt, concurrency=3)
    assert summary.lines == records(content, fmt)
    assert summary.started == len(reported) and summary.accepted + summary.rejected == summary.lines
    assert summary.bytes_read == len(content)
    if not summary.rejected:
        assert summary.rejected_file is None
        return
    assert summary.rejected_file is not None
    if fmt is FileFormat.CSV:
        with summary.rejected_file.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))[1:]
        assert all(row[1] for row in rows)  # a reason for each
        assert not any(cell.startswith(FORMULA_START) for row in rows for cell in row)
        assert len(rows) == summary.rejected
    else:
        # JSON Lines are separated by \n only (a name may hold U+2028, which splitlines() splits)
        text = summary.rejected_file.read_text("utf-8")
        entries = [json.loads(x) for x in text.removesuffix("\n").split("\n")]
        assert all(entry["reason"] for entry in entries)
        assert len(entries) == summary.rejected


@pytest.mark.parametrize("line", [NESTED, HUGE_NUMBER], ids=["nested", "huge-number"])
async def test_json_bombs_are_rejected_lines(tmp_path: Path, line: bytes) -> None:
    valid = json_line(failure_fields("G1", "G1-F1"))
    source = tmp_path / "failures.jsonl"
    source.write_bytes(b"\n".join([valid, line, valid]) + b"\n")
    seen: list[str] = []

    async def report(failure: BillingFailure) -> str:
        seen.append(failure.failure_id)
        return "started"

    summary = await run_import(source, report)
    assert (summary.lines, summary.started, summary.rejected) == (3, 2, 1)
    assert summary.rejected_file is not None
    [rejected] = [json.loads(x) for x in summary.rejected_file.read_text().splitlines()]
    assert rejected["line"] == 2 and rejected["reason"].startswith("bad JSON")
