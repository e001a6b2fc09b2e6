"""A billing run's failures file, read line by line, and the file of the lines it rejected.

Formats: CSV with a header row (one record per line: quoted cells may hold commas and quotes but
not line breaks) and JSON Lines (one object per line), both with the field names of `COLUMNS`;
``subscription_ids`` is `;`-separated in CSV and a list in JSON. Lines are numbered as an editor
numbers them (the CSV header is line 1) and never loaded all at once: a file may be huge. A line
over `MAX_LINE_BYTES` is rejected unread. Rejected lines go to ``<input>.rejected.csv`` (columns
line, rejected_because, then the original cells, escaped against spreadsheet formulas) or to
``<input>.rejected.jsonl`` (objects with line, reason and the original text).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from core.files import private_open
from core.models import BillingFailure

MAX_LINE_BYTES = 64 * 1024
# A valid record is far below this (200 subscription GUIDs are ~7.4 KB): longer cells are noise.
MAX_CELL_CHARS = 8 * 1024
COLUMNS = (
    "failure_id",
    "invoice_id",
    "tenant_id",
    "customer_name",
    "customer_email",
    "locale",
    "subscription_ids",
    "amount_due",
    "currency",
    "failed_at",
    "reason",
)
OPTIONAL = frozenset({"locale", "currency", "reason"})
# file column -> field of BillingFailure.customer
CUSTOMER = {
    "tenant_id": "tenant_id",
    "customer_name": "name",
    "customer_email": "email",
    "locale": "locale",
}
COLUMN_OF = {("customer", field): column for column, field in CUSTOMER.items()}
PATTERNS = {
    "tenant_id": "not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
    "subscription_ids": "not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
    "invoice_id": "not an invoice id (letters, digits, '-' and '_', at most 64)",
    "failure_id": "not a failure id (letters, digits, '_', '.', ':' and '-', at most 128)",
    "currency": "not a three-letter currency code such as CNY",
}
# A cell starting with one of these is run as a formula by spreadsheet programs (OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


SUFFIXES = {".csv": FileFormat.CSV, ".jsonl": FileFormat.JSONL, ".ndjson": FileFormat.JSONL}


class FailureFileError(ValueError):
    """The file as a whole cannot be read (format, header); nothing was reported from it."""


@dataclass(frozen=True)
class Line:
    """One record of the file: a valid failure, or the problem that keeps it out."""

    number: int
    text: str  # the original line, without its line break
    failure: BillingFailure | None = None
    problem: str | None = None
    cells: list[str] | None = None  # CSV cells as read, for the rejected file


def detect_format(path: Path, explicit: FileFormat | None = None) -> FileFormat:
    if explicit is not None:
        return explicit
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise FailureFileError(
            f"{path.name}: cannot tell the format from the extension "
            f"(use .csv, .jsonl or .ndjson, or --format)"
        )
    return found


def describe(exc: ValidationError) -> str:
    """The validation errors of one line, named by the file's column names."""
    return "; ".join(_describe_one(error) for error in exc.errors(include_url=False))


def _describe_one(error: ErrorDetails) -> str:
    loc = error["loc"]
    if len(loc) >= 2 and loc[0] == "customer":
        column = where = COLUMN_OF.get(("customer", str(loc[1])), str(loc[1]))
    elif len(loc) >= 2 and loc[0] == "subscription_ids" and isinstance(loc[1], int):
        column, where = "subscription_ids", f"subscription_ids item {loc[1] + 1}"
    else:
        column = where = str(loc[0]) if loc else "line"
    if error["type"] == "string_pattern_mismatch" and column in PATTERNS:
        return f"{where}: {PATTERNS[column]}"
    if error["type"] == "missing":
        return f"{where}: missing"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


def build_failure(fields: dict[str, Any]) -> BillingFailure:
    """A failure from the file's flat fields (absent or empty optional fields take defaults)."""
    present = {k: v for k, v in fields.items() if v is not None and v != ""}
    customer = {
        field: present.pop(column) for column, field in CUSTOMER.items() if column in present
    }
    return BillingFailure.model_validate({**present, "customer": customer})


class FailureReader:
    """Streams the records of a failures file; the CSV header is read and checked on open."""

    def __init__(self, path: Path, fmt: FileFormat) -> None:
        self.path = path
        self.format = fmt
        self.columns: list[str] = list(COLUMNS)
        self.offset = 0  # bytes read so far
        try:
            self._stream: IO[bytes] = path.open("rb")
        except OSError as err:
            raise FailureFileError(f"{path}: {err.strerror or err}") from None
        self.size = os.fstat(self._stream.fileno()).st_size
        self._number = 0
        if fmt is FileFormat.CSV:
            try:
                self.columns = self._read_header()
            except BaseException:
                self._stream.close()
                raise

    def __enter__(self) -> FailureReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stream.close()

    def __iter__(self) -> Iterator[Line]:
        for number, raw, problem in self._raw_lines():
            if problem is not None:
                yield Line(number, raw, problem=problem)
            elif raw.strip():
                yield self._parse(number, raw)

    def _raw_lines(self) -> Iterator[tuple[int, str, str | None]]:
        """(line number, text, problem) of each physical line; over-long lines are skipped."""
        while True:
            chunk = self._stream.readline(MAX_LINE_BYTES + 1)
            if not chunk:
                return
            self._number += 1
            self.offset += len(chunk)
            if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                head = chunk[:1024].decode("utf-8", "replace")
                while chunk and not chunk.endswith(b"\n"):
                    chunk = self._stream.readline(MAX_LINE_BYTES)
                    self.offset += len(chunk)
                yield self._number, head, f"line longer than {MAX_LINE_BYTES} bytes"
                continue
            content = chunk.removesuffix(b"\n").removesuffix(b"\r")
            if self._number == 1:
                content = content.removeprefix(b"\xef\xbb\xbf")  # a BOM, as Excel writes
            try:
                yield self._number, content.decode("utf-8"), None
            except UnicodeDecodeError as err:
                text = content.decode("utf-8", "replace")
                yield self._number, text, f"not UTF-8 text (byte {err.start + 1})"

    def _read_header(self) -> list[str]:
        for number, raw, problem in self._raw_lines():
            if problem is not None:
                raise FailureFileError(f"{self.path.name}: line {number}: header {problem}")
            if not raw.strip():
                continue
            try:
                header = [c.strip().lower() for c in next(csv.reader([raw], strict=True))]
            except csv.Error as err:
                raise FailureFileError(f"{self.path.name}: line {number}: header: {err}") from None
            unknown = [c for c in header if c not in COLUMNS]
            missing = [c for c in COLUMNS if c not in header and c not in OPTIONAL]
            repeated = sorted({c for c in header if header.count(c) > 1})
            for label, names in (("unknown", unknown), ("missing", missing)):
                if names:
                    raise FailureFileError(
                        f"{self.path.name}: line {number}: {label} column(s) {', '.join(names)} "
                        f"(columns: {', '.join(COLUMNS)})"
                    )
            if repeated:
                raise FailureFileError(
                    f"{self.path.name}: line {number}: repeated column(s) {', '.join(repeated)}"
                )
            return header
        raise FailureFileError(f"{self.path.name}: empty file (no header row)")

    def _parse(self, number: int, raw: str) -> Line:
        cells: list[str] | None = None
        try:
            if self.format is FileFormat.CSV:
                cells = next(csv.reader([raw], strict=True))
                fields = self._csv_fields(cells)
            else:
                fields = _json_fields(raw)
            return Line(number, raw, failure=build_failure(fields), cells=cells)
        except _BadLine as err:
            return Line(number, raw, problem=str(err), cells=cells)
        except csv.Error as err:
            return Line(number, raw, problem=f"bad CSV: {err}")
        except ValidationError as err:
            return Line(number, raw, problem=describe(err), cells=cells)

    def _csv_fields(self, cells: list[str]) -> dict[str, Any]:
        if len(cells) != len(self.columns):
            raise _BadLine(f"expected {len(self.columns)} cells, found {len(cells)}")
        fields: dict[str, Any] = {k: v.strip() for k, v in zip(self.columns, cells, strict=True)}
        if "subscription_ids" in fields:
            ids = [s.strip() for s in fields["subscription_ids"].split(";") if s.strip()]
            fields["subscription_ids"] = ids or None
        return fields


class _BadLine(ValueError):
    pass


def _json_fields(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw, parse_float=Decimal)  # money never passes through float
    except json.JSONDecodeError as err:
        raise _BadLine(f"bad JSON: {err.msg} (column {err.colno})") from None
    except RecursionError:  # a hostile line: arrays or objects nested thousands deep
        raise _BadLine("bad JSON: nested too deeply") from None
    except ValueError as err:  # an integer of thousands of digits, over Python's limit
        raise _BadLine(f"bad JSON: {err}") from None
    if not isinstance(value, dict):
        raise _BadLine("bad JSON: not an object")
    unknown = sorted(k for k in value if k not in COLUMNS)
    if unknown:
        raise _BadLine(f"unknown field(s) {', '.join(unknown)}")
    return value


def rejected_path(source: Path, fmt: FileFormat) -> Path:
    suffix = ".rejected.csv" if fmt is FileFormat.CSV else ".rejected.jsonl"
    return source.with_name(source.name + suffix)


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: formulas quoted, huge values cut."""
    value = _capped(value)
    return "'" + value if value.startswith(FORMULA_START) else value


class RejectedFile:
    """``<input>.rejected.csv|jsonl``, created on the first rejection; an older one is replaced."""

    def __init__(self, source: Path, fmt: FileFormat, columns: list[str]) -> None:
        self.path = rejected_path(source, fmt)
        self.format = fmt
        self.columns = columns
        self.count = 0
        self._stream: IO[str] | None = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> RejectedFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is not None:
            self._stream.close()

    def write(self, line: Line, reason: str) -> None:
        self.count += 1
        if self.format is FileFormat.CSV:
            self._write_csv(line, reason)
        else:
            self._open().write(
                json.dumps(
                    {"line": line.number, "reason": reason, "original": _capped(line.text)},
                    ensure_ascii=False,
                )
                + "\n"
            )

    def _write_csv(self, line: Line, reason: str) -> None:
        fresh = self._stream is None
        writer = csv.writer(self._open())
        if fresh:
            writer.writerow(["line", "rejected_because", *self.columns])
        original = line.cells if line.cells is not None else [line.text]
        writer.writerow([str(line.number), safe_cell(reason), *map(safe_cell, original)])

    def _open(self) -> IO[str]:
        if self._stream is None:
            # utf-8-sig: Excel then shows Chinese customer names correctly
            encoding = "utf-8-sig" if self.format is FileFormat.CSV else "utf-8"
            self._stream = private_open(self.path, encoding)  # customer names and emails
        return self._stream


def _capped(text: str) -> str:
    if len(text) <= MAX_CELL_CHARS:
        return text
    return f"{text[:MAX_CELL_CHARS]}… ({len(text)} characters)"
