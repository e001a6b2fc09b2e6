"""The baseline: a bare case workflow with the pipeline's shape and none of its work.

Same updates (note, resolve, confirm) and the same activities, each a no-op, carried out one at a
time by the main loop as the real workflow does. Default data converter, no search attributes, no
database, no email. Its worker runs with the same settings as the product's (cache, task slots,
activity threads, and the workflow runner: `WORKFLOW_SANDBOX`), so the ratio measures our code,
not the worker's configuration.

`python -m bench.bare` runs its worker (TASK_QUEUE and the MAX_* settings from the environment).
"""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from workflows import cache_bytecode, workflow_runner

OPEN, RESOLVING, RESOLVED, CLOSED = "open", "resolving", "resolved", "closed"


@dataclass
class BareView:
    status: str
    events: int


@activity.defn
def noop(step: str) -> None:
    """Synchronous like the product's activities: it runs on the activity thread pool."""


@workflow.defn
class BareCaseWorkflow:
    """The pipeline case's loop without its work: events are counted and "persisted" by a no-op
    (several at a time when they pile up, as the real loop does), emails are no-ops that add an
    event, and the resolution email makes the case resolved."""

    @workflow.init
    def __init__(self, case_id: str) -> None:
        self._status = OPEN
        self._events = 1  # opened
        self._persisted = 0
        self._emails = ["acknowledge", "owner"]

    @workflow.run
    async def run(self, case_id: str) -> BareView:
        while True:
            while self._persisted < self._events or self._emails:
                if self._persisted < self._events:
                    upto = self._events
                    await self._noop("persist")
                    self._persisted = max(self._persisted, upto)
                else:
                    email = self._emails.pop(0)
                    await self._noop(email)
                    self._events += 1
                    if email == "resolution" and self._status == RESOLVING:
                        self._status = RESOLVED
                        self._events += 1
            if self._status == CLOSED:
                return self.view()
            await workflow.wait_condition(
                lambda: self._persisted < self._events or bool(self._emails)
            )

    async def _noop(self, step: str) -> None:
        await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=60))

    @workflow.update
    def note(self, text: str) -> BareView:
        self._events += 1
        return self.view()

    @workflow.update
    def resolve(self, summary: str) -> BareView:
        self._status = RESOLVING
        self._events += 1
        self._emails.append("resolution")
        return self.view()

    @workflow.update
    def confirm(self, by: str) -> BareView:
        self._status = CLOSED
        self._events += 2
        self._emails.append("closed")
        return self.view()

    @confirm.validator
    def _check_confirm(self, by: str) -> None:
        if self._status != RESOLVED:
            raise ApplicationError(f"cannot confirm: {self._status}", non_retryable=True)

    @workflow.query
    def view(self) -> BareView:
        return BareView(status=self._status, events=self._events)


def build_bare_worker(
    client: Client,
    task_queue: str,
    *,
    cache: int,
    activities: int,
    workflow_tasks: int,
    sandboxed: bool,
) -> Worker:
    cache_bytecode(Path(__file__).parent)  # as the product's runner does for its workflows
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BareCaseWorkflow],
        activities=[noop],
        activity_executor=ThreadPoolExecutor(max_workers=activities),
        max_concurrent_activities=activities,
        max_concurrent_workflow_tasks=workflow_tasks,
        max_cached_workflows=cache,
        workflow_runner=workflow_runner(sandboxed),
    )


async def main() -> None:
    # imported here, not at the top: the sandbox re-imports this module for every workflow run
    from temporalio.envconfig import ClientConfig

    from core.settings import load_settings

    settings = load_settings()
    config = ClientConfig.load_client_connect_config()
    client = await Client.connect(**config)  # the default data converter: bare
    worker = build_bare_worker(
        client,
        settings.task_queue,
        cache=settings.max_cached_workflows,
        activities=settings.max_concurrent_activities,
        workflow_tasks=settings.max_concurrent_workflow_tasks,
        sandboxed=settings.workflow_sandbox,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
