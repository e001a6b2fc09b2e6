"""Bank statement import: the banks' layouts read (ICBC GBK CSV, BOC XLSX, CCB UTF-8 CSV, CMB GBK
CSV, finance's own mapping), unknown files refused; then, on the real worker (SQLite and
PostgreSQL), statements matched to invoices in collections and recorded as payments: a merged
transfer for two bills, a wrong amount, an overpayment, a mistyped bill number matched by finance
(which teaches the payer's account), a duplicate import that records nothing, and the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from core.settings import Settings, SettingsError
from db.session import shared_sessions
from db.tables import PayerAccount, StatementLineRow
from intake.statements import BUILT_IN, StatementError, StatementLine, StatementReader
from service import Service
from service.statements import StatementSummary
from tests.intake_support import unique_prefix
from tests.statement_support import (
    XINGHE,
    YUNFAN,
    Transfer,
    balance,
    open_invoice,
    statement,
    stored,
    write_csv,
)
from worker import build_worker

D = Decimal


def read(path: Path, settings: Settings | None = None) -> tuple[str, str, list[StatementLine]]:
    layouts = (*(settings.bank_layouts() if settings else []), *BUILT_IN)
    reader = StatementReader(path, layouts)
    lines = [line for line in reader.lines() if isinstance(line, StatementLine)]
    return reader.layout.name, reader.encoding, lines


TRANSFERS = [
    Transfer(D("1200.00"), YUNFAN, "6222020200112233", "付款 G1001，G1002"),
    Transfer(D("-50.00"), "某供应商", "1234567890"),
    Transfer(D("99.50"), XINGHE),
]


@pytest.mark.parametrize(
    ("layout", "name", "encoding", "read_as"),
    [
        ("icbc", "s.csv", "gbk", "gb18030"),
        ("boc", "s.xlsx", "utf-8", "xlsx"),
        ("ccb", "s.csv", "utf-8-sig", "utf-8-sig"),
        ("cmb", "s.csv", "gbk", "gb18030"),
        ("cmb", "s.csv", "utf-8", "utf-8"),
    ],
)
def test_each_banks_layout_and_encoding_is_read(
    tmp_path: Path, layout: str, name: str, encoding: str, read_as: str
) -> None:
    found, encoding_read, lines = read(statement(tmp_path / name, layout, TRANSFERS, encoding))
    assert (found, encoding_read) == (layout, read_as)
    assert [line.amount for line in lines] == [D("1200.00"), D("-50.00"), D("99.50")]
    first = lines[0]
    assert (first.payer_name, first.payer_account) == (YUNFAN, "6222020200112233")
    assert "G1001，G1002" in first.remark and first.currency == "CNY"
    assert lines[2].payer_account == "" and lines[2].payer_name == XINGHE
    assert len({line.reference for line in lines}) == 3
    again = read(statement(tmp_path / f"again-{name}", layout, TRANSFERS, encoding))[2]
    assert [line.reference for line in again] == [line.reference for line in lines]


def test_an_unknown_file_is_refused_saying_why(tmp_path: Path) -> None:
    unknown = write_csv(tmp_path / "abc.csv", [["日期", "金额", "户名"], ["2026-12-07", "1", "x"]])
    with pytest.raises(StatementError, match="no header row of a known bank layout"):
        read(unknown)
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("交易日期,金额\n".encode("utf-16"))
    with pytest.raises(StatementError, match="UTF-16"):
        read(utf16)
    latin = tmp_path / "bad.csv"
    latin.write_bytes(b"date,amount\n\x80\x80\xff\n")
    with pytest.raises(StatementError, match="neither UTF-8 nor GBK"):
        read(latin)
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    with pytest.raises(StatementError, match=r"\.csv or an \.xlsx"):
        read(pdf)
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK not a workbook")
    with pytest.raises(StatementError, match="not a readable XLSX"):
        read(broken)


def test_a_bad_row_is_rejected_naming_its_column(tmp_path: Path) -> None:
    rows = [
        ["记账日期", "货币", "交易金额", "联机余额", "交易摘要", "对手信息", "客户摘要"],
        ["2026-12-07", "人民币", "一百", "1.00", "汇入", "某公司", ""],
        ["2026-13-45", "人民币", "1.00", "1.00", "汇入", "某公司", ""],
        ["2026-12-07", "比特币", "1.00", "1.00", "汇入", "某公司", ""],
    ]
    reader = StatementReader(write_csv(tmp_path / "cmb.csv", rows), BUILT_IN)
    reasons = [getattr(item, "reason", "") for item in reader.lines()]
    assert reasons == [
        "交易金额: '一百' is not an amount",
        "记账日期: '2026-13-45' is not a date",
        "货币: unknown currency '比特币'",
    ]


def test_finance_maps_another_banks_columns(tmp_path: Path) -> None:
    layouts = tmp_path / "layouts.toml"
    layouts.write_text(
        '[[layout]]\nname = "abc"\nbank = "中国农业银行"\ndate = "交易日期"\n'
        'credit = "贷方发生额"\ndebit = "借方发生额"\npayer_name = "对方户名"\n'
        'payer_account = "对方账号"\nremark = ["用途"]\nreference = "流水号"\n',
        encoding="utf-8",
    )
    settings = Settings(bank_layouts_file=layouts)
    rows = [
        ["流水号", "交易日期", "借方发生额", "贷方发生额", "对方户名", "对方账号", "用途"],
        ["A0001", "2026/12/07", "", "88.00", YUNFAN, "6222 0000 1111", "G1001"],
    ]
    name, _, lines = read(write_csv(tmp_path / "abc.csv", rows, "gbk"), settings)
    assert name == "abc" and lines[0].reference == "abc:A0001"
    assert lines[0].payer_account == "622200001111" and lines[0].amount == D("88.00")
    layouts.write_text('[[layout]]\nname = "abc"\nbank = "x"\ndate = "d"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="credit"):
        Settings(bank_layouts_file=layouts).bank_layouts()


# -- on the real worker


@pytest_asyncio.fixture
async def stack(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Service]:
    settings = Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        task_queue=f"statements-{uuid.uuid4()}",
    )
    async with build_worker(dev_env.client, settings):
        yield Service(dev_env.client, settings)


async def import_(service: Service, path: Path) -> StatementSummary:
    return await service.statements.import_file(path, by="finance.qian@partner.example.cn")


async def test_statements_are_matched_and_recorded_once(stack: Service, tmp_path: Path) -> None:
    service = stack
    p = unique_prefix()
    a1, a2, a3, b1, c1 = (f"{p}A1", f"{p}A2", f"{p}A3", f"{p}B1", f"{p}C1")
    await open_invoice(service, a1, YUNFAN, "1000.00", 1)
    await open_invoice(service, a2, YUNFAN, "2500.00", 2)
    await open_invoice(service, a3, YUNFAN, "700.00", 3)
    await open_invoice(service, b1, XINGHE, "5000.00", 4)
    await open_invoice(service, c1, "广州南方软件有限公司", "800.00", 5)
    await stored(service, [a1, a2, a3, b1, c1])

    # ICBC, GBK: a merged transfer for two bills (the remark lists them), money out, a partial
    icbc = statement(
        tmp_path / "icbc.csv",
        "icbc",
        [
            Transfer(D("3500.00"), YUNFAN, "6222020200112233", f"货款{a1}、{a2}"),
            Transfer(D("-20.00"), "手续费"),
            Transfer(D("4000.00"), XINGHE, "", "服务费"),  # less than B1's 5,000: partial
        ],
        "gbk",
    )
    first = await import_(service, icbc)
    assert (first.layout, first.encoding) == ("icbc", "gb18030")
    assert (first.matched, first.debits, first.payments, first.waiting) == (2, 1, 3, 0)
    assert await balance(service, a1) == 0 and await balance(service, a2) == 0
    assert await balance(service, b1) == D("1000.00")

    # the same statement again: nothing new
    again = await import_(service, icbc)
    assert (again.duplicates, again.matched, again.payments) == (2, 0, 0)
    assert await balance(service, b1) == D("1000.00")

    # CCB, UTF-8: more than the bill (the rest waits, overpaid); a mistyped bill number from a
    # payer nobody knows (waits, with the bill as candidate); a payer nobody knows (unmatched)
    mistyped = c1[:-2] + c1[-1] + c1[-2]  # two characters swapped
    ccb = statement(
        tmp_path / "ccb.csv",
        "ccb",
        [
            Transfer(D("1300.00"), XINGHE, "", f"{b1}尾款"),
            Transfer(D("800.00"), "南方集团财务有限公司", "6217000011112222", f"付{mistyped}"),
            Transfer(D("12.34"), "无名公司", "6217999900001111", "转账"),
        ],
    )
    second = await import_(service, ccb)
    assert (second.matched, second.overpaid, second.ambiguous, second.unmatched) == (0, 1, 1, 1)
    assert await balance(service, b1) == 0
    queue, total = service.statements.queue()
    assert total == 3 and [line.status for line in queue] == ["overpaid", "ambiguous", "unmatched"]
    overpaid, ambiguous, _ = queue
    assert overpaid.rest == D("300.00") and overpaid.allocations[0]["invoice_id"] == b1
    assert [c["invoice_id"] for c in ambiguous.candidates] == [c1]

    # finance matches the mistyped line in one click: paid, and the account is the customer's
    matched = await service.statements.match_line(ambiguous.id, [c1], by="finance.qian")
    assert matched.status == "matched" and matched.rest == 0
    assert await balance(service, c1) == 0
    tenant = (await service.collections.show(c1)).customer.tenant_id
    assert service.statements.payer_accounts(tenant) == ["6217000011112222"]

    # CMB: the taught account pays the customer's next bill with no bill number in the remark
    c2 = f"{p}C2"
    await open_invoice(service, c2, "广州南方软件有限公司", "450.00", 6)
    await stored(service, [c2])
    cmb = statement(
        tmp_path / "cmb.csv", "cmb", [Transfer(D("450.00"), "南方集团财务", "6217000011112222")]
    )
    third = await import_(service, cmb)
    assert third.matched == 1 and await balance(service, c2) == 0
    row = await asyncio.to_thread(_row, service, third)
    assert row.why == "known payer account" and row.allocations[0]["payment_id"] == row.reference

    # a refused match changes nothing
    with pytest.raises(Exception, match="nothing waits"):
        await service.statements.match_line(ambiguous.id, [c1], by="finance.qian")

    # two people import the same new statement at once: each line is stored once, paid once
    a4 = f"{p}A4"
    await open_invoice(service, a4, YUNFAN, "900.00", 7)
    await stored(service, [a4])
    twice = statement(
        tmp_path / "boc.xlsx",
        "boc",
        [Transfer(D("100.00"), YUNFAN, "", a4), Transfer(D("200.00"), YUNFAN, "", a4)],
    )
    one, other = await asyncio.gather(import_(service, twice), import_(service, twice))
    for summary in (one, other):  # each saw every line: stored by itself, or by the other
        assert summary.matched + summary.duplicates == 2, summary
    assert await balance(service, a4) == D("600.00")  # the same payment ids: counted once
    with shared_sessions(service.settings.database_url)() as session:
        rows = session.query(StatementLineRow).filter_by(file_name="boc.xlsx").all()
        assert len(rows) == 2 and all(row.recorded for row in rows)


def _row(service: Service, summary: StatementSummary) -> StatementLineRow:
    with shared_sessions(service.settings.database_url)() as session:
        rows = session.query(StatementLineRow).filter_by(file_name=summary.file_name).all()
        assert session.query(PayerAccount).count() == 1
        return rows[-1]


async def test_the_cli_imports_a_statement_with_its_summary(
    dev_env: WorkflowEnvironment, running: Settings, tmp_path: Path
) -> None:
    service = Service(dev_env.client, running)
    invoice = unique_prefix()
    await open_invoice(service, invoice, YUNFAN, "100.00", 1)
    await stored(service, [invoice])
    boc = statement(tmp_path / "boc.xlsx", "boc", [Transfer(D("100.00"), YUNFAN, "", invoice)])
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TASK_QUEUE": running.task_queue,
        "DATABASE_URL": running.database_url,
    }

    def run(*args: str) -> str:
        result = CliRunner().invoke(starter.app, list(args), env=env)
        assert result.exit_code == (2 if "abc" in args[-1] else 0), result.output
        return " ".join(result.output.split())

    said = await asyncio.to_thread(run, "import-statement", str(boc))
    assert "boc (中国银行), xlsx" in said and "matched 1" in said.replace("│", "")
    assert await balance(service, invoice) == 0
    said = await asyncio.to_thread(run, "import", "statement", str(boc))
    assert "duplicates (imported before) 1" in said.replace("│", "")
    unknown = write_csv(tmp_path / "abc.csv", [["日期", "金额"]])
    said = await asyncio.to_thread(run, "import-statement", str(unknown))
    assert "no header row of a known bank layout" in said
