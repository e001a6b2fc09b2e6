"""Bank statements written as the banks' exports are laid out (the layouts of
docs/bank-statements.md), for the statement tests and bench scenario 9."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from intake.failure_file import build_failure
from service import Service
from tests.clock_support import eventually
from tests.intake_support import failure_fields

YUNFAN = "上海云帆信息科技有限公司"
XINGHE = "北京星河数据有限公司"


@dataclass(frozen=True)
class Transfer:
    """One line of a statement: money in (positive) or out (negative)."""

    amount: Decimal
    payer_name: str
    payer_account: str = ""
    remark: str = ""
    day: date = date(2026, 12, 7)


def _running(transfers: Iterable[Transfer]) -> Iterable[tuple[Transfer, Decimal]]:
    balance = Decimal("1000000.00")
    for transfer in transfers:
        balance += transfer.amount
        yield transfer, balance


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def icbc_rows(transfers: Iterable[Transfer]) -> list[list[str]]:
    """ICBC's 明细查询文件下载 (deb-sig/double-entry-generator example/icbc/debit-v2): a preamble,
    the header, padded cells, a totals row under the table."""
    rows = [
        ["明细查询文件下载"],
        [],
        ["卡号: 1234****9876", "卡别名: 收款户"],
        [],
        ["子账户序号: 00000", "子账户类别: 活期", "子账户别名: "],
        [],
        [
            "交易日期",
            "摘要",
            "交易详情",
            "交易场所",
            "交易国家或地区简称",
            "钞/汇",
            "交易金额(收入)",
            "交易金额(支出)",
            "交易币种",
            "记账金额(收入)",
            "记账金额(支出)",
            "记账币种",
            "余额",
            "对方户名",
            "对方账户",
        ],
    ]
    for t, balance in _running(transfers):
        credit = _money(t.amount) if t.amount > 0 else ""
        debit = _money(-t.amount) if t.amount < 0 else ""
        rows.append(
            [
                f"{t.day.isoformat()}     \t",
                "他行汇入            \t",
                f"{t.remark}\t",
                "",
                "CHN",
                "钞",
                "-",
                "-",
                "-",
                f"{credit}   \t",
                f"{debit}   \t",
                "人民币         \t",
                _money(balance),
                f"{t.payer_name}    \t",
                t.payer_account,
            ]
        )
    rows += [[" "], ["人民币合计", "", "", "", "", "", "", "", "", "", "1,234.56", "9,876.54"]]
    return rows


def boc_rows(transfers: Iterable[Transfer]) -> list[list[str]]:
    """BOC's 交易流水明细 (jiegec/china_bean_importers boc_debit_card): signed 金额."""
    rows = [
        ["中国银行交易流水明细清单"],
        [
            "记账日期",
            "记账时间",
            "币别",
            "金额",
            "余额",
            "交易名称",
            "渠道",
            "网点名称",
            "附言",
            "对方账户名",
            "对方卡号/账号",
            "对方开户行",
        ],
    ]
    for n, (t, balance) in enumerate(_running(transfers)):
        clock = f"{9 + n // 3600 % 10:02d}:{n // 60 % 60:02d}:{n % 60:02d}"
        rows.append(
            [
                t.day.isoformat(),
                clock,
                "人民币",
                str(t.amount),
                str(balance),
                "转账汇款",
                "网上银行",
                "------",
                t.remark or "------",
                t.payer_name,
                t.payer_account or "------",
                "中国银行上海分行",
            ]
        )
    return rows


def ccb_rows(transfers: Iterable[Transfer]) -> list[list[str]]:
    """CCB's 交易明细 (jiegec/china_bean_importers ccb_debit_card): signed 交易金额, the payer's
    account and name in one column."""
    rows = [
        ["中国建设银行", "交易明细"],
        ["卡号/账号:6217000000000000000"],
        [
            "序号",
            "摘要",
            "币别",
            "钞汇",
            "交易日期",
            "交易金额",
            "账户余额",
            "交易地点/附言",
            "对方账号与户名",
        ],
    ]
    for n, (t, balance) in enumerate(_running(transfers), start=1):
        payer = f"{t.payer_account}/{t.payer_name}" if t.payer_account else t.payer_name
        rows.append(
            [
                str(n),
                "转账存入",
                "人民币元",
                "",
                t.day.strftime("%Y%m%d"),
                str(t.amount),
                str(balance),
                t.remark,
                payer,
            ]
        )
    return rows


def cmb_rows(transfers: Iterable[Transfer]) -> list[list[str]]:
    """CMB's 交易流水 (jiegec/china_bean_importers cmb_debit_card): signed 交易金额, 对手信息 the
    payer's name then account."""
    rows = [
        ["招商银行交易流水"],
        ["记账日期", "货币", "交易金额", "联机余额", "交易摘要", "对手信息", "客户摘要"],
    ]
    for t, balance in _running(transfers):
        rows.append(
            [
                t.day.isoformat(),
                "人民币",
                _money(t.amount),
                _money(balance),
                "汇入汇款",
                f"{t.payer_name}{t.payer_account}",
                t.remark,
            ]
        )
    return rows


LAYOUTS = {"icbc": icbc_rows, "boc": boc_rows, "ccb": ccb_rows, "cmb": cmb_rows}


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: Iterable[list[str]]) -> Path:
    from openpyxl import Workbook  # type: ignore[import-untyped]

    book = Workbook(write_only=True)
    sheet = book.create_sheet("交易明细")
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def statement(
    path: Path, layout: str, transfers: Iterable[Transfer], encoding: str = "utf-8"
) -> Path:
    """A statement of `transfers` in a bank's layout: .xlsx by the path's suffix, else CSV in
    `encoding` (gbk, utf-8, utf-8-sig)."""
    rows = LAYOUTS[layout](transfers)
    if path.suffix == ".xlsx":
        return write_xlsx(path, rows)
    return write_csv(path, rows, encoding)


# -- invoices in collections for the statements to pay


async def open_invoice(service: Service, invoice: str, name: str, amount: str, day: int) -> None:
    fields = failure_fields(
        invoice,
        f"{invoice}-F1",
        customer_name=name,
        tenant_id=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        amount_due=amount,
        failed_at=f"2026-11-{day:02d}T01:00:00+00:00",
    )
    await service.collections.report_failure(build_failure(fields))


async def balance(service: Service, invoice: str) -> Decimal:
    return (await service.collections.show(invoice)).balance


async def stored(service: Service, invoices: list[str]) -> None:
    """The collections rows the import reads its open bills from (written by an activity)."""

    def all_there() -> bool:
        ledger = service.statements.ledger()
        return all(invoice.upper() in ledger.bills for invoice in invoices)

    await eventually(all_there, "the invoices' collections rows")
