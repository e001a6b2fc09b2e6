"""Scenario 2: a billing run's failures imported, against raw starts, each in its own subprocess."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.batch.v1 import BatchOperationTermination
from temporalio.api.workflowservice.v1 import StartBatchOperationRequest

from bench.env import BIN, Child, DevServer, worker_env
from bench.starts import write_failures
from db.migrate import upgrade


@dataclass
class StartRun:
    side: str  # "import" or "raw"
    starts: int
    concurrency: int
    seconds: float
    startup_s: float
    peak_rss: int
    task_queue: str
    workdir: Path

    @property
    def per_second(self) -> float:
        return self.starts / self.seconds


async def run_starts(
    side: str, server: DevServer, workdir: Path, count: int, concurrency: int
) -> StartRun:
    """Start `count` collections workflows on a queue no worker polls yet: the rate is the
    client's and the server's; the importer's queue gets its worker in scenario 3."""
    task_queue = f"bench-{side}-{uuid.uuid4().hex[:8]}"
    run_dir = workdir / task_queue
    run_dir.mkdir(parents=True)
    file = run_dir / "failures.csv"
    write_failures(file, count, prefix=f"{side[0].upper()}{uuid.uuid4().hex[:6].upper()}-")
    result = run_dir / "result.json"
    args = [str(BIN / "python"), "-m", "bench.starts", side, str(file)]
    args += ["--concurrency", str(concurrency), "--result", str(result)]
    env = worker_env(task_queue, run_dir, {})
    upgrade(env["DATABASE_URL"])  # the importer reads it: ended invoices, customers' overrides
    child = Child.start(side, args, env, run_dir / f"{side}.log")
    if await child.wait():
        raise RuntimeError(f"{side} failed with code {child.returncode}:\n{child.tail()}")
    timings = json.loads(result.read_text())
    return StartRun(
        side,
        count,
        concurrency,
        timings["seconds"],
        timings["startup_s"],
        child.peak_rss,
        task_queue,
        run_dir,
    )


async def discard(server: DevServer, run: StartRun, within: float = 600.0) -> float:
    """Terminate the workflows a baseline started only to time its starts. Left running, their
    thousands of first tasks wait in the dev server on a queue no worker polls: idle, they cost
    it no CPU, but updates in scenario 3 measured 5-10x slower beside them (2026-12-01).
    Returns the seconds it took."""
    client = server.bare
    query = f'TaskQueue = "{run.task_queue}" AND ExecutionStatus = "Running"'
    start = time.monotonic()
    await client.workflow_service.start_batch_operation(
        StartBatchOperationRequest(
            namespace=client.namespace,
            job_id=f"discard-{run.task_queue}",
            visibility_query=query,
            reason="bench: a baseline's workflows, started only to time the starts",
            termination_operation=BatchOperationTermination(identity="bench"),
        )
    )
    while (left := (await client.count_workflows(query)).count) > 0:
        if time.monotonic() - start > within:
            raise RuntimeError(f"{left} of the {run.side} side's workflows still running")
        await asyncio.sleep(2)
    return time.monotonic() - start
