"""Billing run import: `starter.py import-failures FILE` against raw `start_workflow` calls.

Each side runs in a subprocess of its own (`python -m bench.starts import|raw FILE ...`) so its
peak memory is its own; each times itself from after its interpreter and modules are loaded, so
the rate compares the work, not Python's start-up. The raw side reads and validates the file
before the clock starts, then sends the very start requests the importer sends (same workflow,
input, id, signal-with-start, search attributes, summary) at the same concurrency.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 -- after the clock: the import time is reported, not hidden
import asyncio  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

FAILED_AT = "2026-11-24T01:00:00+00:00"


def write_failures(path: Path, count: int, prefix: str) -> None:
    """A billing run's file: `count` failures of distinct invoices, as the billing system sends."""
    from intake.failure_file import COLUMNS

    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for n in range(count):
            invoice = f"{prefix}{n:06d}"
            guid = uuid.uuid5(uuid.NAMESPACE_URL, invoice)
            subscriptions = [str(uuid.uuid5(guid, str(i))) for i in range(2)]
            writer.writerow(
                [
                    f"{invoice}-F1",
                    invoice,
                    str(guid),
                    "上海云帆信息科技有限公司",
                    "finance@yunfan.example.cn",
                    "zh-CN",
                    ";".join(subscriptions),
                    "12340.50",
                    "CNY",
                    FAILED_AT,
                    "card declined",
                ]
            )


def run_import(file: Path, concurrency: int) -> dict[str, float]:
    from starter import app

    loaded = time.perf_counter()
    args = ["import-failures", str(file), "--concurrency", str(concurrency)]
    try:
        app(args, standalone_mode=False)
    except SystemExit as done:  # typer.Exit(1) when a line was rejected
        if done.code:
            raise
    return {"startup_s": loaded - STARTED, "seconds": time.perf_counter() - loaded}


async def run_raw(file: Path, concurrency: int) -> dict[str, float]:
    from temporalio.common import WorkflowIDReusePolicy

    from core import search, ui
    from core.models import StartCollections
    from core.settings import load_settings
    from core.temporal import connect
    from intake.failure_file import FailureReader, FileFormat
    from starter import collections_id
    from workflows.collections import CollectionsWorkflow

    settings = load_settings()
    policy, case_policy = settings.collections_policy(), settings.case_policy()
    with FailureReader(file, FileFormat.CSV) as reader:
        failures = [line.failure for line in reader if line.failure is not None]
    loaded = time.perf_counter()
    client = await connect(settings)
    todo = iter(failures)

    async def starter() -> None:
        for failure in todo:  # shared: each task takes the next failure until none is left
            await client.start_workflow(
                CollectionsWorkflow.run,
                StartCollections(failure=failure, policy=policy, case_policy=case_policy),
                id=collections_id(failure.invoice_id),
                task_queue=settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                start_signal="billing_failed",
                start_signal_args=[failure],
                static_summary=ui.collections_summary(failure),
                static_details=ui.collections_details(failure),
                search_attributes=search.collections_attributes(
                    invoice_id=failure.invoice_id,
                    tenant_id=failure.customer.tenant_id,
                    stage="opened",
                    balance=failure.amount_due,
                    suspended=False,
                ),
            )

    await asyncio.gather(*(starter() for _ in range(concurrency)))
    return {"startup_s": loaded - STARTED, "seconds": time.perf_counter() - loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("side", choices=["import", "raw"])
    parser.add_argument("file", type=Path)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--result", type=Path, required=True, help="where the timings go (JSON)")
    args = parser.parse_args()
    if args.side == "import":
        result = run_import(args.file, args.concurrency)
    else:
        result = asyncio.run(run_raw(args.file, args.concurrency))
    args.result.write_text(json.dumps(result))
    # the SDK's runtime threads can abort the interpreter's finalization (SIGABRT) once the
    # client is gone; the result is written, so end here
    os._exit(0)


if __name__ == "__main__":
    main()
