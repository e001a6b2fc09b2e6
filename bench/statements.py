"""Scenario 9: a bank statement imported and matched (`starter.py import-statement`), against the
same payments sent as raw updates, each side in its own subprocess.

The product's worker (a subprocess) brings `invoices` collections per side to their first wait;
then each side gets an ICBC statement in GBK of `lines` lines over its own invoices (each invoice
paid in several partial transfers, the bill number in the remark; one line in 50 from a payer
nobody knows, which waits in the queue). The raw side reads the file and finds each line's bill
before its clock starts, then sends `Collections.act(PaymentReceived)` for each, the very update
the importer sends, at the same concurrency. The importer's time includes everything else it
does: the open bills read, the layout and encoding found, each line matched, stored, marked. Its
peak RSS is its own (wait4), the figure the target is about.

    python -m bench.statements import|raw FILE --concurrency 20 --result result.json
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import asyncio  # noqa: E402 -- after the clock: the import time is reported, not hidden
import json  # noqa: E402
import re  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

PAYER = "北京示例贸易有限公司"
LINE_AMOUNT = Decimal("10.00")
UNKNOWN_EVERY = 50
STARTS_AT_ONCE = 50
CACHE_SPARE = 1000  # workflows cached beyond a side's invoices and accounts
BILL = re.compile(r"货款 (\S+)")


@dataclass
class StatementSide:
    side: str  # "import" or "raw"
    lines: int
    payments: int
    seconds: float
    startup_s: float
    peak_rss: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.lines / self.seconds


@dataclass
class StatementRun:
    invoices: int  # per side
    lines: int  # per side
    concurrency: int
    seed_seconds: float
    sides: list[StatementSide]

    def side(self, name: str) -> StatementSide:
        return next(side for side in self.sides if side.side == name)

    @property
    def ratio(self) -> float:
        return self.side("import").per_second / self.side("raw").per_second


def write_statement(path: Path, invoices: list[str], lines: int) -> None:
    from tests.statement_support import Transfer, statement

    def transfers() -> Any:
        for n in range(lines):
            if n % UNKNOWN_EVERY == UNKNOWN_EVERY - 1:
                yield Transfer(LINE_AMOUNT, "陌生公司", "", "往来款")
            else:
                invoice = invoices[n % len(invoices)]
                yield Transfer(LINE_AMOUNT, PAYER, f"6222{n:012d}", f"货款 {invoice}")

    statement(path, "icbc", transfers(), "gbk")


# -- each side, in its own process


async def run_import(file: Path, concurrency: int) -> dict[str, Any]:
    from core.settings import load_settings
    from service import Service

    settings = load_settings()
    loaded = time.perf_counter()
    service = await Service.connect(settings)
    summary = await service.statements.import_file(file, by="bench", concurrency=concurrency)
    seconds = time.perf_counter() - loaded
    counts = {
        name: getattr(summary, name)
        for name in ("rows", "matched", "ambiguous", "unmatched", "overpaid", "duplicates")
    }
    counts["rejected"] = summary.rejected_count
    return {"startup_s": loaded - STARTED, "seconds": seconds, "payments": summary.payments} | {
        "counts": counts
    }


async def run_raw(file: Path, concurrency: int) -> dict[str, Any]:
    from core.models import PaymentReceived
    from core.settings import load_settings
    from intake.statements import BUILT_IN, StatementLine, StatementReader
    from service import Service

    settings = load_settings()
    payments = []
    for line in StatementReader(file, BUILT_IN).lines():
        if isinstance(line, StatementLine) and (found := BILL.search(line.remark)):
            payments.append(
                PaymentReceived(
                    payment_id=line.reference,
                    invoice_id=found.group(1),
                    amount=line.amount,
                    received_at=datetime(2026, 12, 7, 4, tzinfo=UTC),
                    by="bench",
                )
            )
    loaded = time.perf_counter()
    collections = (await Service.connect(settings)).collections
    todo = iter(payments)

    async def sender() -> None:
        for payment in todo:  # shared: each task takes the next payment until none is left
            await collections.act(payment.invoice_id, payment)  # what the importer sends

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return {
        "startup_s": loaded - STARTED,
        "seconds": time.perf_counter() - loaded,
        "payments": len(payments),
        "counts": {},
    }


# -- the scenario


async def run_statements(
    server: Any,
    workdir: Path,
    tuning: dict[str, int],
    *,
    invoices: int,
    lines: int,
    concurrency: int = 20,
) -> StatementRun:
    from bench.env import BIN, WORKER, Child, worker_env
    from bench.workspace import projected
    from core.settings import Settings
    from db.migrate import upgrade
    from service import Service
    from tests.clock_support import eventually
    from tests.workflow_support import billing_failure

    run_dir = workdir / f"statements-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    # A statement in time order pays its invoices round and round: with fewer cached workflows
    # than a side's invoices and their accounts, every payment replays its invoice's history
    # (docs/production.md sizes MAX_CACHED_WORKFLOWS the same way)
    cache = max(tuning.get("max_cached_workflows", 0), 2 * invoices + CACHE_SPARE)
    env = worker_env(run_dir.name, run_dir, {**tuning, "max_cached_workflows": cache})
    upgrade(env["DATABASE_URL"])
    settings = Settings(
        task_queue=env["TASK_QUEUE"],
        database_url=env["DATABASE_URL"],
        outbox_dir=Path(env["OUTBOX_DIR"]),
    )
    service = Service(server.client, settings)
    worker = Child.start("worker", WORKER, env, run_dir / "worker.log")
    sides: list[StatementSide] = []
    try:
        start = time.monotonic()
        limit = asyncio.Semaphore(STARTS_AT_ONCE)
        prefix = uuid.uuid4().hex[:6].upper()
        bills = {
            side: [f"S{prefix}{side[0].upper()}{n:06d}" for n in range(invoices)]
            for side in ("raw", "import")
        }

        async def one(invoice: str) -> None:
            amount = str(LINE_AMOUNT * (lines // invoices + 2))  # never paid in full
            async with limit:
                await service.collections.start(billing_failure(invoice_id=invoice, amount=amount))

        await asyncio.gather(*(one(i) for listed in bills.values() for i in listed))
        await eventually(
            lambda: projected(settings.database_url)[1] >= 2 * invoices,
            "the collections rows the importer reads",
            seconds=600,
            every=1,
        )
        seed_seconds = time.monotonic() - start
        for side in ("raw", "import"):
            file = run_dir / f"{side}.csv"
            write_statement(file, bills[side], lines)
            result = run_dir / f"{side}.json"
            args = [str(BIN / "python"), "-m", "bench.statements", side, str(file)]
            args += ["--concurrency", str(concurrency), "--result", str(result)]
            child = Child.start(side, args, env, run_dir / f"{side}.log")
            if await child.wait():
                raise RuntimeError(f"{side} failed with code {child.returncode}:\n{child.tail()}")
            got = json.loads(result.read_text())
            sides.append(
                StatementSide(
                    side,
                    lines,
                    got["payments"],
                    got["seconds"],
                    got["startup_s"],
                    child.peak_rss,
                    got["counts"],
                )
            )
    finally:
        await worker.stop()
    return StatementRun(invoices, lines, concurrency, seed_seconds, sides)


def main() -> None:
    from bench.starts import side_main

    side_main(__doc__, run_import, run_raw)


if __name__ == "__main__":
    main()
