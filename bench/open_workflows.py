"""Scenario 3: thousands of collections workflows waiting on their policy timers, one worker.

The importer's workflows (scenario 2) get the product's worker (`worker.py`, a subprocess whose
RSS is sampled and whose peak comes from wait4). Once every one of them has carried out its
day-0 step and waits on its next timer, agents act while they stay open: notes on billing cases
(in the worker's cache) and promises to pay on collections the worker has long evicted (each
such update replays the workflow's history first).
"""

from __future__ import annotations

import asyncio
import csv
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.billing_run import StartRun
from bench.env import WORKER, Child, DevServer, profiler, worker_env
from core.models import AddNote, EventKind, PromiseToPay
from core.settings import Settings
from db.migrate import upgrade
from service import Service
from tests.workflow_support import open_case

AGENT = "agent.bench@partner.example.cn"


def quantile(ms: list[float], q: float) -> float:
    """The nearest rank."""
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Latency:
    """Milliseconds of each update, as the agent's CLI call sees it."""

    what: str
    per_second: float  # the rate the updates arrive at
    ms: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        return quantile(self.ms, q)

    def summary(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "updates": len(self.ms),
            "per_second": self.per_second,
            "p50_ms": round(self.quantile(0.50), 1),
            "p95_ms": round(self.quantile(0.95), 1),
            "max_ms": round(max(self.ms), 1),
            "mean_ms": round(statistics.fmean(self.ms), 1),
            "ms": [round(ms) for ms in self.ms],  # in order of arrival: does a queue build up?
        }


@dataclass
class OpenRun:
    workflows: int
    drain_seconds: float
    worker_peak_rss: int
    worker_rss_waiting: int  # once all wait on timers
    worker_rss_idle: int  # right after start, before any workflow
    latencies: list[Latency]
    tuning: dict[str, int]
    cpu_ms_per_workflow: dict[str, float]  # worker, dev server, while bringing them to a timer
    cpu_share_while_agents_act: dict[str, float]  # cores busy: worker, dev server


def waiting(database_url: str) -> int:
    """How many collections have had their day-0 email stored (their customer's account sends
    it; each customer here has one invoice): each then waits on its next timer."""
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        row = db.execute(
            "SELECT count(*) FROM account_events WHERE kind = ? AND text = ?",
            (EventKind.EMAIL_SENT.value, "collections_payment_failed"),
        ).fetchone()
    return int(row[0])


async def timed(rate: float, count: int, action: Callable[[int], Awaitable[object]]) -> list[float]:
    """`count` actions arriving at `rate` per second whether or not earlier ones are done (as
    agents act, each on their own screen): the latency under that load, not at saturation."""
    ms = [0.0] * count  # in order of arrival: a growing latency shows a queue building up

    async def one(n: int) -> None:
        await asyncio.sleep(n / rate)
        start = time.perf_counter()
        await action(n)
        ms[n] = 1000 * (time.perf_counter() - start)

    await asyncio.gather(*(one(n) for n in range(count)))
    return ms


async def run_open_workflows(
    server: DevServer,
    imported: StartRun,
    tuning: dict[str, int],
    *,
    cases: int,
    updates: int,
    rate: float,
    profile: bool = False,
) -> OpenRun:
    env = worker_env(imported.task_queue, imported.workdir, tuning)
    upgrade(env["DATABASE_URL"])
    worker = Child.start("worker", WORKER, env, imported.workdir / "worker.log")
    try:
        await asyncio.sleep(3)  # its imports and first polls: the RSS of an idle worker
        idle = worker.rss
        spy = profiler(worker, imported.workdir / "worker-drain.txt") if profile else None
        cpu = (worker.cpu_seconds(), server.process.cpu_seconds())
        start, deadline = time.perf_counter(), time.monotonic() + 120 + imported.starts / 5
        told = start
        while (done := waiting(env["DATABASE_URL"])) < imported.starts:
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker stopped at {done}/{imported.starts}:\n{worker.tail()}")
            if time.perf_counter() - told > 30:
                told = time.perf_counter()
                # not `rate`: until 2026-12-02 this overwrote the agents' rate with the drain's
                drained = done / (told - start)
                print(
                    f"  3. {done:,}/{imported.starts:,} waiting, {drained:.1f}/s", file=sys.stderr
                )
            await asyncio.sleep(1)
        drain = time.perf_counter() - start
        cpu_ms = {
            "worker": round(1000 * (worker.cpu_seconds() - cpu[0]) / imported.starts, 1),
            "server": round(1000 * (server.process.cpu_seconds() - cpu[1]) / imported.starts, 1),
        }
        if spy is not None:
            await spy.stop()
        await asyncio.sleep(3)  # the last timers are started
        rss_waiting = worker.rss
        spy = profiler(worker, imported.workdir / "worker-agents.txt") if profile else None
        busy = (worker.cpu_seconds(), server.process.cpu_seconds(), time.perf_counter())
        latencies = await agents_act(server, imported, cases=cases, updates=updates, rate=rate)
        span = time.perf_counter() - busy[2]
        agents_cpu = {
            "worker": round((worker.cpu_seconds() - busy[0]) / span, 2),
            "server": round((server.process.cpu_seconds() - busy[1]) / span, 2),
        }
        if spy is not None:
            await spy.stop()
    finally:
        await worker.stop()
    return OpenRun(
        imported.starts,
        drain,
        max(worker.peak_rss, worker.sampled_peak),
        rss_waiting,
        idle,
        latencies,
        tuning,
        cpu_ms,
        agents_cpu,
    )


async def agents_act(
    server: DevServer, imported: StartRun, *, cases: int, updates: int, rate: float
) -> list[Latency]:
    service = Service(server.client, Settings(task_queue=imported.task_queue))
    opened = [open_case() for _ in range(cases)]
    await asyncio.gather(*(service.cases.open(c) for c in opened))
    notes = Latency("note on an open case (cached)", rate)
    pick = random.Random(6)

    async def note(n: int) -> None:
        case = opened[pick.randrange(cases)]
        await service.cases.act(case.case_id, AddNote(text=f"Called the customer ({n})", by=AGENT))

    await asyncio.sleep(5)  # the new cases' first emails and writes are done
    notes.ms = await timed(rate, updates, note)

    # the file's first invoices: long evicted from the worker's cache by the thousands after them
    with (imported.workdir / "failures.csv").open(encoding="utf-8") as file:
        rows = csv.DictReader(file)
        invoices = [row["invoice_id"] for _, row in zip(range(updates), rows, strict=False)]
    promises = Latency("promise to pay on a waiting collections (evicted)", rate)
    until = datetime.now(UTC) + timedelta(days=14)

    async def promise(n: int) -> None:
        await service.collections.act(invoices[n], PromiseToPay(until=until, by=AGENT))

    promises.ms = await timed(rate, len(invoices), promise)
    return [notes, promises]
