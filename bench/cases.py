"""Scripted cases, open → note → resolve → confirm → closed: the pipeline's and the bare baseline's.

Both do the same business from this process (start and query, three updates, the confirm once the
customer has the resolution, the result) against a worker subprocess on its own queue, each the
way its client can: the bare workflow is polled until it is resolved; the pipeline's resolve
answers once the resolution reached the customer (as the CLI and the workspace use it), so it is
polled only if that answer came first (it never does here).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

from bench import actions
from bench.bare import RESOLVED, BareCaseWorkflow, BareView
from bench.env import BIN, WORKER, Child, DevServer, profiler, worker_env
from core.ids import case_workflow_id
from core.models import AddNote, CaseStatus, Confirm, Outcome, Resolve
from core.settings import Settings
from db.migrate import upgrade
from service import Service
from tests.workflow_support import open_case
from workflows.billing_case import BillingCaseWorkflow

AGENT = "agent.bench@partner.example.cn"
POLL = 0.05  # seconds between "is it resolved yet?" queries, the same for both
WARM_UP = 5

T = TypeVar("T")
Script = Callable[[], Awaitable[str]]  # runs one case, returns its workflow id


@dataclass
class CaseRun:
    kind: str
    cases: int
    concurrency: int
    seconds: float
    steps_per_case: float  # activities and local activities: the same work on both sides
    cpu_ms_per_case: dict[str, float]  # worker, dev server, driver
    server_requests_per_case: dict[str, float]  # the dev server's RPCs and database calls
    actions_per_case: dict[str, float]  # Temporal Cloud's billable actions, by kind, and "total"

    def requests(self, *names: str) -> float:
        return sum(self.server_requests_per_case.get(name, 0.0) for name in names)

    @property
    def per_second(self) -> float:
        return self.cases / self.seconds


def pipeline_script(client: Client, settings: Settings) -> Script:
    cases = Service(client, settings).cases

    async def case() -> str:
        data = open_case()
        await cases.open(data)
        case_id = data.case_id
        await cases.act(case_id, AddNote(text="Checked the meter data", by=AGENT))
        resolve = Resolve(outcome=Outcome.EXPLAINED, summary="Usage matches the meter.", by=AGENT)
        if (await cases.act(case_id, resolve)).status is not CaseStatus.RESOLVED:
            await poll(lambda: cases.show(case_id), lambda v: v.status is CaseStatus.RESOLVED)
        await cases.act(case_id, Confirm())
        workflow_id = case_workflow_id(case_id)
        handle = client.get_workflow_handle_for(BillingCaseWorkflow.run, workflow_id)
        assert (await handle.result()).status is CaseStatus.CLOSED
        return workflow_id

    return case


def bare_script(client: Client, task_queue: str) -> Script:
    async def case() -> str:
        case_id = uuid.uuid4().hex[:12]
        handle = await client.start_workflow(
            BareCaseWorkflow.run, case_id, id=f"bare-{case_id}", task_queue=task_queue
        )
        await handle.query(BareCaseWorkflow.view)
        await handle.execute_update(BareCaseWorkflow.note, "Checked the meter data")
        await handle.execute_update(BareCaseWorkflow.resolve, "Usage matches the meter.")
        await poll(
            lambda: handle.query(BareCaseWorkflow.view), lambda view: view.status == RESOLVED
        )
        await handle.execute_update(BareCaseWorkflow.confirm, "customer")
        view: BareView = await handle.result()
        assert view.status == "closed"
        return handle.id

    return case


async def poll(view: Callable[[], Awaitable[T]], ready: Callable[[T], bool]) -> None:
    """Query until the case is ready for the customer's confirmation, as a refreshing screen."""
    for _ in itertools.count():
        if ready(await view()):
            return
        await asyncio.sleep(POLL)


async def drive(script: Script, cases: int, concurrency: int) -> tuple[float, list[str]]:
    """Run `cases` scripts, `concurrency` at a time; the wall time and the workflow ids."""
    todo = iter(range(cases))
    ids: list[str] = []

    async def agent() -> None:
        for _ in todo:  # shared: each agent takes the next case until none is left
            ids.append(await script())

    start = time.perf_counter()
    await asyncio.gather(*(agent() for _ in range(concurrency)))
    return time.perf_counter() - start, ids


async def histories(handles: list[WorkflowHandle[Any, Any]]) -> list[list[HistoryEvent]]:
    return [list((await handle.fetch_history()).events) for handle in handles]


async def run_cases(
    kind: str,
    server: DevServer,
    workdir: Path,
    tuning: dict[str, int],
    cases: int,
    concurrency: int,
    profile: bool = False,
) -> CaseRun:
    """Start a worker subprocess (the product's `worker.py`, or the bare one), warm it up, then
    time `cases` scripted cases through it."""
    task_queue = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    run_dir = workdir / task_queue
    run_dir.mkdir(parents=True)
    env = worker_env(task_queue, run_dir, tuning)
    if kind == "pipeline":
        upgrade(env["DATABASE_URL"])
        settings = Settings(task_queue=task_queue)
        script = pipeline_script(server.client, settings)
        args = WORKER
    else:
        script = bare_script(server.bare, task_queue)
        args = [str(BIN / "python"), "-m", "bench.bare"]
    worker = Child.start(f"{kind} worker", args, env, run_dir / "worker.log")
    try:
        # also waits for the worker to poll: no case is timed before it is ready
        await asyncio.wait_for(drive(script, WARM_UP, WARM_UP), 120)
        spy = profiler(worker, run_dir / "worker-profile.txt") if profile else None
        cpu, requests = _cpu(worker, server), await server.requests()
        seconds, ids = await drive(script, cases, concurrency)
        cpu = {name: after - cpu[name] for name, after in _cpu(worker, server).items()}
        requests = await server.requests() - requests
        if spy is not None:
            await spy.stop()
        if worker.process.poll() is not None:
            raise RuntimeError(f"{kind} worker died:\n{worker.tail()}")
    finally:
        await worker.stop()
    client = server.client if kind == "pipeline" else server.bare
    runs = await histories([client.get_workflow_handle(i) for i in ids])
    per_case = {name: round(1000 * used / cases, 1) for name, used in cpu.items()}
    asked = {name: round(n / cases, 2) for name, n in sorted(requests.items())}
    work = sum(actions.steps(events) for events in runs) / len(runs)
    billed = actions.per_case(runs, asked)
    return CaseRun(kind, cases, concurrency, seconds, work, per_case, asked, billed)


def _cpu(worker: Child, server: DevServer) -> dict[str, float]:
    """CPU seconds used so far by the worker, the dev server and this process (the driver)."""
    times = os.times()
    return {
        "worker": worker.cpu_seconds(),
        "server": server.process.cpu_seconds(),
        "driver": times.user + times.system,
    }
