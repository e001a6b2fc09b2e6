"""`make chaos`: cases and collections on a dev server of its own while the worker is SIGKILLed
every few seconds and the server is restarted once on its database file; then how many workflows
were lost, how many rows `verify` finds at odds with Temporal, and how many emails went out twice.

    .venv/bin/python -m chaos [--cases 200] [--collections 200] [--kill-every 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from temporalio.client import Client

from chaos.harness import (
    WorkerProcess,
    chaos_settings,
    check_emails,
    confirm_case,
    open_case,
    pay_in_full,
    report_failure,
    resolve_case,
    retry,
)
from core.codec import new_key
from core.models import CaseStatus, CollectionsStatus
from core.temporal import data_converter
from service.verify import verify
from workflows.collections import CollectionsWorkflow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from dev import start_dev_server, stop  # scripts/ is a plain folder, not a package

CONCURRENCY = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main(
    cases: int, collections: int, kill_every: float, chaos_seconds: float, settle_seconds: float
) -> int:
    from tests.workflow_support import billing_failure
    from tests.workflow_support import open_case as case_data

    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    port, ui_port = free_port(), free_port()
    server = await asyncio.to_thread(start_dev_server, work / "temporal.db", port, ui_port)
    settings = chaos_settings(work, "chaos", f"chaos:{new_key()}")
    address = f"127.0.0.1:{port}"
    client = await Client.connect(address, data_converter=data_converter(settings))
    worker = WorkerProcess(settings, address, work / "worker.log")
    worker.start()
    server_restarts = 0
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one_case() -> bool:
        async with limit:
            case_id = await open_case(client, settings, case_data(owner=None))
            await resolve_case(client, case_id)
            return (await confirm_case(client, case_id)).status is CaseStatus.CLOSED

    async def one_invoice(n: int) -> bool:
        failure = billing_failure(amount=f"{1000 + n}.50")
        async with limit:
            await report_failure(client, settings, failure)
            handle = client.get_workflow_handle_for(
                CollectionsWorkflow.run, f"collections-{failure.invoice_id}"
            )
            # pay once the subscriptions are suspended, so the payment reactivates them
            view = await retry(lambda: handle.query(CollectionsWorkflow.view))
            while view.suspended_at is None:
                await asyncio.sleep(0.5)
                view = await retry(lambda: handle.query(CollectionsWorkflow.view))
            return (await pay_in_full(client, failure)).status is CollectionsStatus.PAID

    async def chaos(done: asyncio.Event) -> None:
        nonlocal server, server_restarts
        until = time.monotonic() + chaos_seconds
        while time.monotonic() < until and not done.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    done.wait(), random.uniform(kill_every / 2, kill_every * 1.5)
                )
            if done.is_set():
                break
            worker.restart()
            if not server_restarts and time.monotonic() > until - chaos_seconds / 2:
                stop(server, "temporal server")
                server = await asyncio.to_thread(
                    start_dev_server, work / "temporal.db", port, ui_port
                )
                server_restarts += 1
        if not worker.alive():
            worker.start()

    done = asyncio.Event()
    # interleaved, so cases and collections share the worker from the start
    drivers = [
        asyncio.create_task(driver)
        for n in range(max(cases, collections))
        for driver in ([one_case()] if n < cases else [])
        + ([one_invoice(n)] if n < collections else [])
    ]
    chaos_task = asyncio.create_task(chaos(done))
    try:
        finished, _ = await asyncio.wait(drivers, timeout=chaos_seconds + settle_seconds)
        done.set()
        await chaos_task
        lost = sum(
            task not in finished or task.exception() is not None or not task.result()
            for task in drivers
        )
        for task in drivers:
            task.cancel()
        report = await verify(client=client, settings=settings)
        emails = check_emails(settings)
    finally:
        done.set()
        worker.stop()
        stop(server, "temporal server")
    minutes = (time.monotonic() - began) / 60
    print(
        f"chaos: {cases} cases + {collections} collections, worker SIGKILLed {worker.kills} times, "
        f"server restarted {server_restarts} time(s), {minutes:.1f} min (files in {work})"
    )
    print(f"lost: {lost}")
    print(f"mismatched: {len(report.differences)}")
    for difference in report.differences[:20]:
        print(f"  {difference}")
    print(
        f"duplicates: {emails.duplicates} (emails sent: {emails.sent}, outbox files: "
        f"{emails.files}, not sent: {emails.not_sent}, sent after a retried claim: "
        f"{emails.retried})"
    )
    return 1 if lost or report.differences or emails.duplicates or emails.not_sent else 0


def cli() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--collections", type=int, default=200)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds, on average")
    parser.add_argument("--chaos-seconds", type=float, default=120.0, help="how long to kill")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=600.0,
        help="after the chaos, how long a workflow may take to end before it counts as lost",
    )
    args = parser.parse_args()
    return asyncio.run(
        main(args.cases, args.collections, args.kill_every, args.chaos_seconds, args.settle_seconds)
    )


if __name__ == "__main__":
    sys.exit(cli())
