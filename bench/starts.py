"""Billing run import: the service's `import_failures` (what `starter.py import failures FILE`
runs) against raw `start_workflow` calls.

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
from collections.abc import Callable, Coroutine  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

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


async def run_import(file: Path, concurrency: int) -> dict[str, Any]:
    from core.settings import load_settings
    from service import Service

    settings = load_settings()
    loaded = time.perf_counter()
    service = await Service.connect(settings)
    summary = await service.import_failures(file, concurrency=concurrency)
    if summary.rejected:
        raise SystemExit(f"{summary.rejected} lines rejected: see {summary.rejected_file}")
    return {"startup_s": loaded - STARTED, "seconds": time.perf_counter() - loaded}


async def run_raw(file: Path, concurrency: int) -> dict[str, Any]:
    from core.settings import load_settings
    from intake.failure_file import FailureReader, FileFormat
    from service import Service

    settings = load_settings()
    with FailureReader(file, FileFormat.CSV) as reader:
        failures = [line.failure for line in reader if line.failure is not None]
    loaded = time.perf_counter()
    collections = (await Service.connect(settings)).collections
    policies = collections.policies()
    todo = iter(failures)

    async def starter() -> None:
        for failure in todo:  # shared: each task takes the next failure until none is left
            await collections.start(failure, policies)  # the very request the importer sends

    await asyncio.gather(*(starter() for _ in range(concurrency)))
    return {"startup_s": loaded - STARTED, "seconds": time.perf_counter() - loaded}


Side = Callable[[Path, int], Coroutine[Any, Any, dict[str, Any]]]


def side_main(doc: str | None, run_import: Side, run_raw: Side) -> None:
    """A side of a bench scenario in its own process: `import|raw FILE --concurrency N --result
    JSON`; its timings written as JSON."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("side", choices=["import", "raw"])
    parser.add_argument("file", type=Path)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--result", type=Path, required=True, help="where the timings go (JSON)")
    args = parser.parse_args()
    run = run_import if args.side == "import" else run_raw
    result = asyncio.run(run(args.file, args.concurrency))
    args.result.write_text(json.dumps(result))
    # the SDK's runtime threads can abort the interpreter's finalization (SIGABRT) once the
    # client is gone; the result is written, so end here
    os._exit(0)


def main() -> None:
    side_main(__doc__, run_import, run_raw)


if __name__ == "__main__":
    main()
