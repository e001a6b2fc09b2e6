"""Read a bank's statement export (CSV or XLSX): find its layout by the header row, its encoding
(UTF-8, or GB18030, which GBK is a part of), and yield its lines one at a time.

The built-in layouts are the column names open-source importers read from the banks' exports
(docs/bank-statements.md names each file and commit); finance maps another bank's columns in
`BANK_LAYOUTS_FILE`. A file whose header row fits no layout is refused before anything is read.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from core.models.shared import clean_text
from core.models.statement import BankLayout

HEADER_ROWS = 40  # the header row is among a file's first rows (ICBC's comes after 6 lines)
MAX_CELL = 2_000
MAX_FIELD = 64 * 1024

BUILT_IN: tuple[BankLayout, ...] = (
    # 中国工商银行: deb-sig/double-entry-generator, example/icbc/debit-v2 (with 对方账户)
    BankLayout(
        name="icbc",
        bank="中国工商银行",
        date="交易日期",
        credit="记账金额(收入)",
        debit="记账金额(支出)",
        currency="记账币种",
        balance="余额",
        payer_name="对方户名",
        payer_account="对方账户",
        remark=["摘要", "交易详情"],
        also=["交易场所"],
    ),
    # 中国工商银行, the earlier export: example/icbc/debit (no 交易详情, no 对方账户)
    BankLayout(
        name="icbc-v1",
        bank="中国工商银行",
        date="交易日期",
        credit="记账金额(收入)",
        debit="记账金额(支出)",
        currency="记账币种",
        balance="余额",
        payer_name="对方户名",
        remark=["摘要"],
        also=["交易场所"],
    ),
    # 中国银行: jiegec/china_bean_importers, boc_debit_card (signed 金额)
    BankLayout(
        name="boc",
        bank="中国银行",
        date="记账日期",
        time="记账时间",
        amount="金额",
        currency="币别",
        balance="余额",
        payer_name="对方账户名",
        payer_account="对方卡号/账号",
        remark=["附言", "交易名称"],
    ),
    # 中国建设银行: jiegec/china_bean_importers, ccb_debit_card (signed 交易金额)
    BankLayout(
        name="ccb",
        bank="中国建设银行",
        date="交易日期",
        amount="交易金额",
        currency="币别",
        balance="账户余额",
        payer="对方账号与户名",
        remark=["交易地点/附言", "摘要"],
        also=["序号"],
    ),
    # 招商银行: jiegec/china_bean_importers, cmb_debit_card; deb-sig/double-entry-generator, cmb
    BankLayout(
        name="cmb",
        bank="招商银行",
        date="记账日期",
        amount="交易金额",
        currency="货币",
        balance="联机余额",
        payer="对手信息",
        remark=["客户摘要", "交易摘要"],
    ),
)

CURRENCIES = {
    "人民币": "CNY",
    "人民币元": "CNY",
    "RMB": "CNY",
    "美元": "USD",
    "港币": "HKD",
    "港元": "HKD",
    "欧元": "EUR",
    "日元": "JPY",
    "英镑": "GBP",
}
EMPTY = {"", "-", "--", "——", "------"}
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日")
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y%m%d %H:%M:%S", "%Y-%m-%d %H:%M")
# a payer cell holding an account (digits, maybe masked) and a name, in either order
ACCOUNT_RUN = re.compile(r"[0-9][0-9* ]{5,}[0-9*]")


class StatementError(Exception):
    """The file cannot be imported: nothing was read from it. `kind` says what is wrong with it
    (for the workspace to say in the reader's language): file, encoding, layout or unreadable."""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind


class BadLine(Exception):
    """One line cannot be read; the message names the column."""


@dataclass(frozen=True)
class StatementLine:
    row: int  # the file's row number (1-based), for people to find it
    reference: str  # the bank's transaction reference, or one derived from the line
    booked_on: date
    booked_at: time | None
    amount: Decimal  # money in is positive, money out negative
    currency: str
    balance: Decimal | None
    payer_name: str
    payer_account: str
    remark: str

    @property
    def is_credit(self) -> bool:
        return self.amount > 0


@dataclass(frozen=True)
class Rejected:
    row: int
    reason: str


def detect_encoding(path: Path) -> str:
    """utf-8 (a BOM or none) when every byte decodes so; else gb18030 (GBK's superset, what Chinese
    banks' exports use) when it decodes; else StatementError. Read in chunks: memory stays flat."""
    with path.open("rb") as raw:
        head = raw.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise StatementError(
            f"{path.name}: UTF-16 text; export the statement as UTF-8 or GBK", "encoding"
        )
    for encoding in ("utf-8", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as raw:
                while chunk := raw.read(1 << 20):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    raise StatementError(f"{path.name}: the text is neither UTF-8 nor GBK/GB18030", "encoding")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):  # an XLSX number: its shortest decimal form
        return repr(value)
    return str(value)[:MAX_CELL].strip().strip("\t").strip()


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    from openpyxl import load_workbook  # type: ignore[import-untyped]  # XLSX only

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many kinds for a broken file
        raise StatementError(f"{path.name}: not a readable XLSX workbook ({err})") from None
    try:
        sheet = book.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            yield [_cell(v) for v in values]
    finally:
        book.close()


def _csv_rows(stream: IO[str]) -> Iterator[list[str]]:
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(stream)
    try:
        for record in reader:
            yield [_cell(v) for v in record]
    except csv.Error as err:
        raise StatementError(f"row {reader.line_num}: not CSV ({err})") from None


def _fits(layout: BankLayout, header: list[str]) -> bool:
    return set(layout.required()) <= set(header)


def pick_layout(header: list[str], layouts: tuple[BankLayout, ...]) -> BankLayout | None:
    """The layout whose columns the header row has: the one naming the most, if several fit."""
    fitting = [layout for layout in layouts if _fits(layout, header)]
    return max(fitting, key=lambda layout: len(layout.required()), default=None)


def _amount(text: str, column: str) -> Decimal | None:
    text = text.replace(",", "").replace("，", "").replace(" ", "").replace("¥", "")
    if text in EMPTY:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BadLine(f"{column}: {text[:40]!r} is not an amount") from None
    if not value.is_finite() or abs(value) >= Decimal("1e15"):
        raise BadLine(f"{column}: {text[:40]!r} is not an amount")
    return value


def _when(day: str, moment: str | None, layout: BankLayout) -> tuple[date, time | None]:
    text = " ".join(part for part in (day, moment or "") if part).strip()
    for fmt in DATETIME_FORMATS:
        try:
            at = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return at.date(), at.time()
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(day.split(" ")[0], fmt).date(), None
        except ValueError:
            continue
    raise BadLine(f"{layout.date}: {day[:40]!r} is not a date")


def split_payer(text: str) -> tuple[str, str]:
    """A cell holding the payer's account and name (`6222…1234/某某公司`, `某某公司6222…`):
    (name, account); the account is '' when it has none."""
    found = ACCOUNT_RUN.search(text)
    if found is None:
        return text.strip(), ""
    account = found.group().replace(" ", "")
    name = (text[: found.start()] + " " + text[found.end() :]).strip(" /|,;:，；：-")
    return name.strip(), account


def _currency(text: str, layout: BankLayout) -> str:
    if not text:
        return layout.default_currency
    upper = text.strip().upper()
    if re.fullmatch(r"[A-Z]{3}", upper):
        return "CNY" if upper == "RMB" else upper
    found = CURRENCIES.get(text.strip())
    if found is None:
        raise BadLine(f"{layout.currency}: unknown currency {text[:20]!r}")
    return found


class StatementReader:
    """One statement file: its layout, then its lines (`lines()`), each a StatementLine or a
    Rejected. Debit lines are yielded too (the importer counts and skips them)."""

    def __init__(self, path: Path, layouts: tuple[BankLayout, ...]) -> None:
        self.path = path
        if not path.is_file():
            raise StatementError(f"{path}: no such file", "file")
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".txt", ".xlsx"):
            raise StatementError(f"{path.name}: a statement is a .csv or an .xlsx export", "file")
        self.is_xlsx = suffix == ".xlsx"
        self.encoding = "xlsx" if self.is_xlsx else detect_encoding(path)
        self._layouts = layouts
        self.layout, self.header, self._header_row = self._find_header()

    def _rows(self) -> Iterator[list[str]]:
        if self.is_xlsx:
            yield from _xlsx_rows(self.path)
            return
        with self.path.open(encoding=self.encoding, newline="") as stream:
            yield from _csv_rows(stream)

    def _find_header(self) -> tuple[BankLayout, list[str], int]:
        for number, row in enumerate(self._rows(), start=1):
            layout = pick_layout(row, self._layouts)
            if layout is not None:
                return layout, row, number
            if number >= HEADER_ROWS:
                break
        known = ", ".join(f"{layout.name} ({layout.bank})" for layout in self._layouts)
        raise StatementError(
            f"{self.path.name}: no header row of a known bank layout in its first {HEADER_ROWS} "
            f"rows (known: {known}); map this bank's columns in BANK_LAYOUTS_FILE "
            "(docs/bank-statements.md)",
            "layout",
        )

    def count_rows(self) -> int | None:
        """About how many rows the file has, for a progress bar (None when unknown)."""
        if self.is_xlsx:  # the sheet's dimension, as the export wrote it (None without one)
            from openpyxl import load_workbook

            book = load_workbook(self.path, read_only=True)
            try:
                rows = book.worksheets[0].max_row
            finally:
                book.close()
            return None if rows is None else max(0, rows - self._header_row)
        count = 0
        with self.path.open("rb") as raw:
            while chunk := raw.read(1 << 20):
                count += chunk.count(b"\n")
        return max(0, count - self._header_row)

    def lines(self) -> Iterator[StatementLine | Rejected]:
        layout = self.layout
        index = {name: i for i, name in reversed(list(enumerate(self.header)))}
        seen: dict[str, int] = {}
        for number, row in enumerate(self._rows(), start=1):
            if number <= self._header_row:
                continue
            got = {name: row[i] if i < len(row) else "" for name, i in index.items()}
            day = got.get(layout.date, "")
            if not day or "合计" in row[0] or "总计" in row[0] or not any(row):
                continue  # blank rows and the totals under the table
            try:
                line = self._line(number, got)
            except BadLine as err:
                yield Rejected(number, str(err))
                continue
            # the same line twice in one file (no reference, no balance) stays two lines
            count = seen.get(line.reference, 0)
            seen[line.reference] = count + 1
            if count:
                line = _with_reference(line, f"{line.reference}.{count}")
            yield line

    def _line(self, number: int, got: dict[str, str]) -> StatementLine:
        layout = self.layout
        booked_on, booked_at = _when(got[layout.date], got.get(layout.time or ""), layout)
        if layout.amount is not None:
            amount = _amount(got[layout.amount], layout.amount)
            if amount is None:
                raise BadLine(f"{layout.amount}: empty")
        else:
            assert layout.credit is not None
            credit = _amount(got[layout.credit], layout.credit)
            debit = _amount(got[layout.debit], layout.debit) if layout.debit else None
            if credit is None and debit is None:
                raise BadLine(f"{layout.credit}: empty, and no {layout.debit}")
            amount = credit if credit else -(debit or Decimal(0))
        if amount == 0:
            raise BadLine(f"{layout.amount or layout.credit}: zero")
        currency = _currency(got.get(layout.currency or "", ""), layout)
        balance = _amount(got[layout.balance], layout.balance) if layout.balance else None
        if layout.payer is not None:
            name, account = split_payer(_text(layout.payer, got[layout.payer]))
        else:
            name = _text(layout.payer_name, got.get(layout.payer_name or "", ""))
            account = _text(layout.payer_account, got.get(layout.payer_account or "", ""))
            account = account.replace(" ", "")
        remark = " ".join(_text(c, got[c]) for c in layout.remark if got.get(c, "") not in EMPTY)
        parts = [booked_on.isoformat(), str(booked_at or ""), str(amount), str(balance or "")]
        reference = _reference(
            layout, got.get(layout.reference or "", ""), [*parts, account, name, remark]
        )
        return StatementLine(
            row=number,
            reference=reference,
            booked_on=booked_on,
            booked_at=booked_at,
            amount=amount.quantize(Decimal("0.01")),
            currency=currency,
            balance=balance,
            payer_name=name[:200],
            payer_account=account[:64],
            remark=remark[:500],
        )


def _text(column: str | None, cell: str) -> str:
    """A text cell as the database keeps it: the edge's rule for free text (no NUL or other
    control character, no bidi override), else the line is rejected naming its column. Long
    texts are cut where the line is built."""
    if cell in EMPTY:
        return ""
    try:
        return clean_text(cell, max_chars=len(cell), max_bytes=4 * len(cell), multiline=True)
    except ValueError as err:
        raise BadLine(f"{column}: {err}") from None


def _reference(layout: BankLayout, given: str, parts: list[str]) -> str:
    """The bank's reference where the layout has one (`boc:2026…`); else a digest of what makes
    the line itself (its date, time, amount, balance after it, payer and remark): the same line
    exported again has the same reference."""
    given = re.sub(r"[^A-Za-z0-9_.-]", "", given)[:80]
    if given:
        return f"{layout.name}:{given}"
    digest = hashlib.sha256("\x1f".join([layout.name, *parts]).encode()).hexdigest()[:32]
    return f"{layout.name}:{digest}"


def _with_reference(line: StatementLine, reference: str) -> StatementLine:
    from dataclasses import replace

    return replace(line, reference=reference)
