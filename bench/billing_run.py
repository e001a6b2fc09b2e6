"""Scenario 2: a billing run's failures imported, against raw starts, each in its own subprocess."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.env import BIN, Child, DevServer, worker_env
from bench.starts import write_failures


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
    child = Child.start(side, args, worker_env(task_queue, run_dir, {}), run_dir / f"{side}.log")
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
