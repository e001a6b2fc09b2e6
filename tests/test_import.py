"""Bulk import of a billing run's failures on the real dev server with the real worker.

1,000 CSV lines over 100 invoices, 50 of them bad, imported twice: the first run starts 100
collections workflows (and their customers' accounts) and joins 850, the second starts none.
The counts are exact because the server lets one start of an id succeed and refuses the rest,
which then join through the workflow's update, whatever the concurrency.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import stat
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import insert
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import starter
from core.ids import collections_workflow_id
from core.models import BillingFailure
from core.settings import Settings
from db.session import make_engine
from db.tables import Account, table
from db.tables import Collections as CollectionsRow
from intake.bulk import ImportAborted, run_import
from intake.failure_file import COLUMNS, FORMULA_START, MAX_LINE_BYTES, FailureFileError
from service import Service
from tests.clock_support import eventually
from tests.intake_support import failure_fields, guid, unique_prefix
from tests.workflow_support import billing_failure
from workflows.collections import CollectionsWorkflow

# a billing run of LINES lines (the full-size one, thousands, is `make bench`'s scenario 4): 49 bad
# lines spread through it, one exact duplicate, a last line cut off mid-way; the rest good
LINES = 400
BAD_EVERY = 8  # a bad line at each index BAD_EVERY * k + BAD_EVERY // 2
INVOICES = 40  # each its customer's: 40 accounts too
GOOD = LINES - 1 - 49 - 1  # plus one exact duplicate: ACCEPTED accepted
ACCEPTED = GOOD + 1
FAILURES_OF_0005 = len(range(5, GOOD, INVOICES))  # the good lines of invoice ...-0005
FORMULA_NAME = '=HYPERLINK("http://evil.example/pay","Pay here")'


def csv_line(fields: dict[str, Any]) -> bytes:
    cells = [";".join(v) if isinstance(v, list) else str(v) for v in fields.values()]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode()


def bad_lines(prefix: str) -> list[tuple[bytes, str]]:
    """49 bad lines, each with a fragment of the reason it must be rejected for."""

    def line(n: int, **overrides: Any) -> bytes:
        return csv_line(
            failure_fields(f"{prefix}-{n % INVOICES:04d}", f"{prefix}-B{n}", **overrides)
        )

    def no_reason(n: int) -> bytes:
        fields = failure_fields(f"{prefix}-{n:04d}", f"{prefix}-B{n}")
        del fields["reason"]
        return csv_line(fields)

    good_sub = guid("subscription", prefix)
    cases: list[tuple[int, Any, str]] = [
        (10, lambda n: line(n, tenant_id=f"not-a-guid-{n}"), "tenant_id: not a GUID"),
        (5, lambda n: line(n, subscription_ids=[good_sub, "x1"]), "subscription_ids item 2"),
        (5, lambda n: line(n, amount_due="-12.00"), "amount_due: "),
        (2, lambda n: line(n, amount_due="0"), "amount_due: must be greater than 0"),
        (2, lambda n: line(n, amount_due="1.005"), "amount_due: must have at most two"),
        (3, lambda n: line(n, failure_id=""), "failure_id: missing"),
        (3, lambda n: line(n, customer_email=""), "customer_email: missing"),
        (2, lambda n: line(n, customer_email="finance@"), "customer_email: "),
        (3, lambda n: line(n, failed_at="2026-11-24T09:00:00"), "failed_at: must include a time"),
        (3, no_reason, "expected 11 cells, found 10"),
        (2, lambda n: f'{prefix}-B{n},"{prefix}-1\n'.encode(), "bad CSV"),
        (2, lambda n: line(n, locale="fr-FR"), "locale: "),
        (1, lambda n: line(n, customer_name=FORMULA_NAME, amount_due="-1.00"), "amount_due"),
        (1, lambda n: line(n, customer_name="X").replace(b",X,", b",\xff\xfe,"), "not UTF-8"),
        (1, lambda n: line(n, reason="x" * (MAX_LINE_BYTES + 10)), "longer than 65536 bytes"),
        (2, lambda n: line(n, currency="cny"), "currency: not a three-letter"),
        (1, lambda n: line(n, customer_name="Yunfan\x07"), "customer_name: must not contain"),
        (1, lambda n: line(n, invoice_id="INV/1"), "invoice_id: not an invoice id"),
    ]
    made: list[tuple[bytes, str]] = []
    for count, make, reason in cases:
        for _ in range(count):
            made.append((make(len(made)), reason))
    return made


def write_failures_csv(path: Path, prefix: str) -> tuple[dict[int, str], dict[int, str]]:
    """Writes the file; returns {line number: failure id} of the accepted lines and
    {line number: reason fragment} of the rejected ones."""
    names = {5: FORMULA_NAME, 6: 'Yunfan, "Cloud" Ltd.'}  # both valid names
    good = [
        failure_fields(
            f"{prefix}-{k % INVOICES:04d}",
            f"{prefix}-F{k:05d}",
            **({"customer_name": names[k]} if k in names else {}),
        )
        for k in range(GOOD)
    ]
    bad = iter(bad_lines(prefix))
    accepted: dict[int, str] = {}
    rejected: dict[int, str] = {}
    out = bytearray(",".join(COLUMNS).encode() + b"\n")
    next_good = 0
    for index in range(LINES - 1):
        number = index + 2  # the header is line 1
        if index % BAD_EVERY == BAD_EVERY // 2 and index < 49 * BAD_EVERY:
            data, reason = next(bad)
            rejected[number] = reason
        elif index == LINES // 2:  # an exact repeat of an earlier line: it joins
            data, accepted[number] = csv_line(good[100]), good[100]["failure_id"]
        else:
            fields = good[next_good]
            next_good += 1
            data, accepted[number] = csv_line(fields), fields["failure_id"]
        out += data
    truncated = csv_line(good[0])[:40]  # the export was cut off mid-line
    out += truncated
    rejected[LINES + 1] = "expected 11 cells"
    assert next_good == GOOD and len(accepted) == ACCEPTED and len(rejected) == 50
    path.write_bytes(bytes(out))
    return accepted, rejected


def read_rejected_csv(path: Path) -> dict[int, list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "rejected_because", *COLUMNS]
    return {int(row[0]): row[1:] for row in rows[1:]}


async def test_import_csv_twice(
    dev_env: WorkflowEnvironment, running: Settings, tmp_path: Path
) -> None:
    client = dev_env.client
    prefix = unique_prefix()
    source = tmp_path / "billing-run-2026-11.csv"
    _, rejected = write_failures_csv(source, prefix)
    seen: list[int] = []

    first = await Service(client, running).import_failures(
        source, concurrency=20, progress=lambda s: seen.append(s.done)
    )
    counts = (first.lines, first.started, first.joined, first.rejected)
    assert counts == (LINES, INVOICES, ACCEPTED - INVOICES, 50)
    assert first.bytes_read == first.total_bytes == source.stat().st_size
    assert seen and seen[-1] == LINES
    assert first.rejected_file == tmp_path / "billing-run-2026-11.csv.rejected.csv"
    # it holds customer names and emails: its owner's alone, whatever the umask
    assert stat.S_IMODE(first.rejected_file.stat().st_mode) == 0o600

    rows = read_rejected_csv(first.rejected_file)
    assert set(rows) == set(rejected)
    for number, fragment in rejected.items():
        assert fragment in rows[number][0], (number, rows[number][0])
    # a spreadsheet opening the rejected file runs no formula; the valid "=..." name was accepted
    for row in rows.values():
        assert not any(cell.startswith(FORMULA_START) for cell in row)
    name_at = 1 + COLUMNS.index("customer_name")
    escaped = [r for r in rows.values() if r[name_at : name_at + 1] == ["'" + FORMULA_NAME]]
    assert len(escaped) == 1 and "amount_due" in escaped[0][0]
    assert all(len(cell) <= 8300 for row in rows.values() for cell in row)

    # every accepted line reached its invoice's workflow (the formula name is data, not code)
    formula_invoice = f"{prefix}-0005"
    handle = client.get_workflow_handle_for(
        CollectionsWorkflow.run, collections_workflow_id(formula_invoice)
    )
    view = await handle.query(CollectionsWorkflow.view)
    assert f"{prefix}-F00005" in view.failures and len(view.failures) == FAILURES_OF_0005

    async def all_started() -> bool:
        query = f'WorkflowId STARTS_WITH "collections-{prefix}-"'
        return (await client.count_workflows(query)).count == INVOICES

    await eventually(all_started)

    second = await Service(client, running).import_failures(source)
    assert (second.started, second.joined, second.rejected) == (0, ACCEPTED, 50)
    assert set(read_rejected_csv(source.with_name(source.name + ".rejected.csv"))) == set(rejected)
    await eventually(all_started)
    assert len((await handle.query(CollectionsWorkflow.view)).failures) == FAILURES_OF_0005


async def test_import_json_lines_and_ended_invoice(
    dev_env: WorkflowEnvironment, running: Settings, tmp_path: Path
) -> None:
    client = dev_env.client
    prefix = unique_prefix()
    lines = [
        json.dumps(failure_fields(f"{prefix}-{k % 10:02d}", f"{prefix}-F{k}"), ensure_ascii=False)
        for k in range(40)
    ]
    lines[7] = lines[7].replace('"12340.50"', "100.10")  # a JSON number: read as Decimal
    lines[8] = lines[8].replace('"card declined"', "null")  # null: the default reason
    bad = {
        41: '{"failure_id": "x", ',
        42: "[1, 2, 3]",
        43: json.dumps({**failure_fields(f"{prefix}-00", "X1"), "colour": "red"}),
        44: json.dumps(failure_fields(f"{prefix}-00", "X2", subscription_ids=guid("s"))),
        45: json.dumps(failure_fields(f"{prefix}-00", "X3")).replace('"12340.50"', "12.345"),
    }
    reasons = {
        41: "bad JSON",
        42: "not an object",
        43: "unknown field(s) colour",
        44: "subscription_ids: Input should be a valid list",
        45: "amount_due: must have at most two decimal places",
    }
    source = tmp_path / "failures.ndjson"
    source.write_text("\n".join([*lines, *bad.values()]) + "\n\n", encoding="utf-8")

    first = await Service(client, running).import_failures(source, concurrency=7)
    assert (first.lines, first.started, first.joined, first.rejected) == (45, 10, 30, 5)
    assert first.rejected_file == tmp_path / "failures.ndjson.rejected.jsonl"
    written = [json.loads(x) for x in first.rejected_file.read_text(encoding="utf-8").splitlines()]
    assert {w["line"]: w["original"] for w in written} == bad
    for entry in written:
        assert reasons[entry["line"]] in entry["reason"]

    # an invoice whose collections ended takes no more failures: its lines are refused with why
    ended = client.get_workflow_handle(collections_workflow_id(f"{prefix}-00"))
    await ended.terminate("test: collections over")
    assert (await ended.describe()).status is WorkflowExecutionStatus.TERMINATED
    second = await Service(client, running).import_failures(source)
    assert (second.started, second.joined, second.rejected) == (0, 36, 9)
    assert second.rejected_file is not None
    refused = [json.loads(x) for x in second.rejected_file.read_text().splitlines()]
    refused_lines = {r["line"]: r["reason"] for r in refused if r["line"] not in bad}
    assert set(refused_lines) == {k + 1 for k in range(0, 40, 10)}
    assert all("already ended (terminated)" in r for r in refused_lines.values())


async def test_unusable_files_report_nothing(
    dev_env: WorkflowEnvironment, running: Settings, tmp_path: Path
) -> None:
    client = dev_env.client
    wrong = tmp_path / "run.csv"
    wrong.write_text("failure_id,invoice,tenant_id\nF1,I1,x\n")
    with pytest.raises(FailureFileError, match=r"unknown column.*invoice"):
        await Service(client, running).import_failures(wrong)
    unknown = tmp_path / "run.txt"
    unknown.write_text("")
    with pytest.raises(FailureFileError, match="--format"):
        await Service(client, running).import_failures(unknown)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(FailureFileError, match="no header"):
        await Service(client, running).import_failures(empty)
    assert not list(tmp_path.glob("*.rejected.*"))


async def test_an_import_reads_the_policies_once(
    dev_env: WorkflowEnvironment,
    running: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before line 1, not for each line: every line of a file starts with the same rules."""
    reads: list[str] = []

    def counting(name: str) -> Any:
        read = getattr(Settings, name)

        def counted(settings: Settings) -> Any:
            reads.append(name)
            return read(settings)

        return counted

    for name in ("collections_policy", "case_policy"):
        monkeypatch.setattr(Settings, name, counting(name))
    prefix = unique_prefix()
    source = tmp_path / "billing-run.csv"
    lines = [csv_line(failure_fields(f"{prefix}-{k:04d}", f"{prefix}-F{k}")) for k in range(5)]
    source.write_bytes(",".join(COLUMNS).encode() + b"\n" + b"".join(lines))

    summary = await Service(dev_env.client, running).import_failures(source)

    assert (summary.started, summary.rejected) == (5, 0)
    assert sorted(reads) == ["case_policy", "collections_policy"]


def test_cli_import_help() -> None:
    result = CliRunner().invoke(starter.app, ["import", "failures", "--help"])
    assert result.exit_code == 0
    assert "rejected" in result.output and "--concurrency" in result.output


async def test_cli_import(dev_env: WorkflowEnvironment, running: Settings, tmp_path: Path) -> None:
    prefix = unique_prefix()
    source = tmp_path / "small.csv"
    good = [failure_fields(f"{prefix}-{k % 2}", f"{prefix}-F{k}") for k in range(3)]
    bad = failure_fields(f"{prefix}-0", f"{prefix}-F9", amount_due="-5")
    source.write_bytes(b"".join([",".join(COLUMNS).encode() + b"\n", *map(csv_line, [*good, bad])]))
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TASK_QUEUE": running.task_queue,
    }
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, starter.app, ["import", "failures", str(source)], env=env
    )
    assert result.exit_code == 1, result.output  # a line was rejected
    assert "started" in result.output and "small.csv.rejected.csv" in result.output
    assert source.with_name("small.csv.rejected.csv").exists()
    wrong = await asyncio.to_thread(
        runner.invoke, starter.app, ["import", "failures", str(tmp_path / "x.xlsx")], env=env
    )
    assert wrong.exit_code == 2 and "--format" in wrong.output


async def test_bounded_concurrency_and_abort(tmp_path: Path) -> None:
    """The reporting itself, without Temporal: never more than `concurrency` reports in flight,
    and a failure of the report function stops the import with the counts so far."""
    source = tmp_path / "run.jsonl"
    lines = [json.dumps(failure_fields(f"INV-{k % 7}", f"F-{k}")) for k in range(200)]
    source.write_text("\n".join(lines) + "\n")
    in_flight = peak = 0

    async def report(failure: BillingFailure) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return "started" if failure.failure_id.endswith("-0") else "joined"

    summary = await run_import(source, report, concurrency=5)
    assert peak == 5 and (summary.started, summary.joined, summary.rejected) == (1, 199, 0)

    calls = 0

    async def unavailable(failure: BillingFailure) -> str:
        nonlocal calls
        calls += 1
        if calls == 50:
            raise RuntimeError("Temporal is unavailable")
        await asyncio.sleep(0)
        return "joined"

    with pytest.raises(ImportAborted, match="Temporal is unavailable") as aborted:
        await run_import(source, unavailable, concurrency=4)
    assert 45 <= aborted.value.summary.joined < 60 and calls < 60


def test_a_batch_is_known_as_each_of_its_lines(database_url: str, tmp_path: Path) -> None:
    """What an import reads of a batch at once (ended invoices, customers' overrides) is what
    each line would have read alone: on SQLite and PostgreSQL."""
    settings = Settings(database_url=database_url, outbox_dir=tmp_path / "outbox")
    collections = Service(cast(Client, None), settings).collections
    now = datetime.now(UTC)
    a, b, c, d = (billing_failure() for _ in range(4))
    c = c.model_copy(update={"customer": a.customer})  # two invoices of one customer
    row = {
        "customer_name": "上海云帆信息科技有限公司",
        "customer_email": "finance@yunfan.example.cn",
        "locale": "zh-CN",
        "created_at": now,
        "updated_at": now,
        "stage": "payment-failed",
        "currency": "CNY",
        "amount_due": Decimal("100.00"),
        "paid": Decimal(0),
        "credited": Decimal(0),
        "balance": Decimal("100.00"),
        "first_failed_at": now,
        "subscription_ids": [],
        "suspended_subscriptions": [],
    }
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            insert(table(CollectionsRow)),
            [
                row
                | {"invoice_id": f.invoice_id, "workflow_id": f"collections-{f.invoice_id}"}
                | {"tenant_id": f.customer.tenant_id, "status": status}
                for f, status in ((a, "paid"), (b, "active"))
            ],
        )
        connection.execute(
            insert(table(Account)),
            {
                "account_id": a.customer.tenant_id,
                "workflow_id": f"account-{a.customer.tenant_id}",
                "tenant_id": a.customer.tenant_id,
                "customer_name": "上海云帆信息科技有限公司",
                "customer_email": "finance@yunfan.example.cn",
                "locale": "zh-CN",
                "created_at": now,
                "updated_at": now,
                "holds": [],
                "suspended_subscriptions": [],
                "fraud": False,
                "overrides": {"exempt_from_suspension": True},
                "last_event_seq": 1,
            },
        )
    engine.dispose()
    batch = [a, b, c, d]
    alone = {f.invoice_id: collections._known(f) for f in batch}
    assert collections.known_many(batch) == alone
    exempt = {"exempt_from_suspension": True}
    assert [alone[f.invoice_id] for f in batch] == [
        ("paid", exempt),  # ended: the import refuses its line
        (None, None),  # running: joined
        (None, exempt),  # another invoice of the exempt customer
        (None, None),
    ]
    assert collections.known_many([]) == {}
