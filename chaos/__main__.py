"""`make chaos`: cases and collections through the HTTP intake on a dev server of its own and on
PostgreSQL, while a random worker or API process is SIGKILLed (and restarted) every few seconds and
the server is restarted once on its database file; then how many workflows were lost, how many
rows `verify` finds at odds with Temporal, how many emails went out twice, how many requests the
intake refused for good and how many cases a retried request opened a second time.

    .venv/bin/python -m chaos [--cases 200] [--collections 200] [--workers 3] [--apis 2]
        [--kill-every 5] [--database-url postgresql://postgres@127.0.0.1:5432/chaos | sqlite]
        [--smtp]

With --smtp the workers send over SMTP to a server of the run's own (chaos/smtp_sink.py), which
is SIGKILLed and started again once; the emails are then the keys it received, each counted as
a duplicate if it came twice and as lost if the log says sent and it never came.

The PostgreSQL database is created if missing, emptied (schema public) and migrated; a second run
on it waits for the first.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url
from temporalio.client import Client

from chaos.harness import (
    ApiProcess,
    ChildProcess,
    Intake,
    IntakeRefused,
    WorkerProcess,
    case_form,
    chaos_settings,
    check_emails,
    confirm_case,
    emails_settle,
    exclusive_database,
    extra_cases,
    free_port,
    new_key,
    open_case_http,
    pay_in_full,
    report_failure_http,
    resolve_case,
    retry,
)
from chaos.smtp_sink import SinkProcess, received
from core.codec import new_key as new_codec_key
from core.ids import collections_workflow_id
from core.models import CaseStatus, CollectionsStatus
from core.temporal import StampActions, data_converter
from service.verify import verify
from workflows.collections import CollectionsWorkflow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from dev import start_dev_server, stop  # scripts/ is a plain folder, not a package

CONCURRENCY = 20
# after the workflows ended, how long an email still being retried may take to go out
EMAILS_SETTLE_SECONDS = 120.0
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/chaos"
SQLITE = "sqlite"  # --database-url sqlite: a SQLite file in the run's folder


@dataclass(frozen=True)
class Plan:
    cases: int
    collections: int
    workers: int
    apis: int
    kill_every: float  # seconds between kills, on average
    chaos_seconds: float  # how long to kill
    settle_seconds: float  # after the chaos, how long a workflow may take to end
    database_url: str
    smtp: bool = False  # email over SMTP to a sink restarted once, not to the outbox


def is_lost(task: asyncio.Task[bool], finished: set[asyncio.Task[bool]]) -> bool:
    """Not ended as it should (closed, paid) within the time; a request the intake refused for
    good is counted as refused instead."""
    if task not in finished:
        return True
    error = task.exception()
    return not isinstance(error, IntakeRefused) if error else not task.result()


async def run(plan: Plan, work: Path, database_url: str | None) -> int:
    from tests.workflow_support import billing_failure

    began = time.monotonic()
    port, ui_port = free_port(), free_port()
    server = await asyncio.to_thread(start_dev_server, work / "temporal.db", port, ui_port)
    server_restarts = revived = sink_restarts = 0
    try:
        settings = chaos_settings(work, "chaos", f"chaos:{new_codec_key()}", database_url)
        address = f"127.0.0.1:{port}"
        client = await Client.connect(
            address, data_converter=data_converter(settings), interceptors=[StampActions()]
        )
        sink = SinkProcess(settings, address, work / "smtp-sink.log", free_port())
        email_env = sink.worker_env() if plan.smtp else {}
        workers = [
            WorkerProcess(settings, address, work / f"worker-{n}.log", **email_env)
            for n in range(plan.workers)
        ]
        apis = [
            ApiProcess(settings, address, work / f"api-{n}.log", free_port())
            for n in range(plan.apis)
        ]
        processes: list[ChildProcess] = [*workers, *apis, *([sink] if plan.smtp else [])]
        intake = Intake(apis, settings)
        limit = asyncio.Semaphore(CONCURRENCY)
        case_ids: set[str] = set()

        async def one_case() -> bool:
            async with limit:
                case_id = await open_case_http(intake, case_form(), new_key("case"))
                case_ids.add(case_id)
                await resolve_case(client, case_id)
                return (await confirm_case(client, case_id)).status is CaseStatus.CLOSED

        async def one_invoice(n: int) -> bool:
            failure = billing_failure(amount=f"{1000 + n}.50")
            async with limit:
                await report_failure_http(intake, failure, new_key("failure"))
                handle = client.get_workflow_handle_for(
                    CollectionsWorkflow.run, collections_workflow_id(failure.invoice_id)
                )
                # pay once the subscriptions are suspended, so the payment reactivates them
                view = await retry(lambda: handle.query(CollectionsWorkflow.view))
                while view.suspended_at is None:
                    await asyncio.sleep(0.5)
                    view = await retry(lambda: handle.query(CollectionsWorkflow.view))
                try:
                    paid = await pay_in_full(intake, client, failure, new_key("payment"))
                except IntakeRefused:  # counted as refused; whether it was paid, the workflow says
                    paid = await retry(handle.result)
                return paid.status is CollectionsStatus.PAID

        async def revive() -> None:
            """Start what exited by itself, as a supervisor would (a worker started while the
            server is down exits: it cannot connect)."""
            nonlocal revived
            for process in processes:
                if not process.alive():
                    await asyncio.to_thread(process.start)
                    revived += 1

        async def chaos(done: asyncio.Event) -> None:
            nonlocal server, server_restarts, sink_restarts
            kinds: list[Sequence[ChildProcess]] = [workers, apis]
            began = time.monotonic()
            until, next_kill = began + plan.chaos_seconds, began
            while time.monotonic() < until and not done.is_set():
                # on a schedule of its own: an API process's seconds to restart are not added
                every = plan.kill_every
                next_kill += random.uniform(every / 2, every * 1.5)
                with suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), max(0.0, next_kill - time.monotonic()))
                if done.is_set():
                    break
                await revive()
                # a worker or an API process, either kind as likely
                await asyncio.to_thread(random.choice(random.choice(kinds)).restart)
                if (
                    plan.smtp
                    and not sink_restarts
                    and time.monotonic() > began + plan.chaos_seconds / 4
                ):
                    await asyncio.to_thread(sink.restart)  # SIGKILLed mid-conversation, maybe
                    sink_restarts += 1
                if not server_restarts and time.monotonic() > until - plan.chaos_seconds / 2:
                    stop(server, "temporal server")
                    server = await asyncio.to_thread(
                        start_dev_server, work / "temporal.db", port, ui_port
                    )
                    server_restarts += 1
            await revive()

        done = asyncio.Event()
        try:
            await asyncio.gather(*(asyncio.to_thread(p.start) for p in processes))
            # interleaved, so cases and collections share the workers from the start
            drivers = [
                asyncio.create_task(driver)
                for n in range(max(plan.cases, plan.collections))
                for driver in ([one_case()] if n < plan.cases else [])
                + ([one_invoice(n)] if n < plan.collections else [])
            ]
            chaos_task = asyncio.create_task(chaos(done))
            timeout = plan.chaos_seconds + plan.settle_seconds
            finished, _ = await asyncio.wait(drivers, timeout=timeout)
            done.set()
            await chaos_task
            lost = sum(is_lost(task, finished) for task in drivers)
            for task in drivers:
                task.cancel()
            report = await verify(client=client, settings=settings)
            await emails_settle(settings, EMAILS_SETTLE_SECONDS)
            emails = check_emails(settings, received(sink.record) if plan.smtp else None)
            extra = await extra_cases(client, settings, case_ids)
        finally:
            done.set()
            await intake.aclose()
            for process in processes:
                process.stop()
    finally:
        stop(server, "temporal server")
    seconds = time.monotonic() - began
    database = "SQLite" if database_url is None else make_url(database_url).render_as_string()
    sink_note = (
        f", SMTP server SIGKILLed and restarted {sink_restarts} time(s)" if plan.smtp else ""
    )
    print(
        f"chaos: {plan.cases} cases + {plan.collections} collections through {plan.apis} API "
        f"processes, {plan.workers} workers, on {database}; workers SIGKILLed "
        f"{sum(w.kills for w in workers)} times, API processes SIGKILLed "
        f"{sum(a.kills for a in apis)} times, {revived} started again after exiting by "
        f"itself, server restarted {server_restarts} time(s){sink_note if plan.smtp else ''}; "
        f"{seconds / 60:.1f} min ({seconds:.0f} s, files in {work})"
    )
    print(f"lost: {lost}")
    print(f"mismatched: {len(report.differences)}")
    for difference in report.differences[:20]:
        print(f"  {difference}")
    went_out = "messages the SMTP server received" if plan.smtp else "outbox files"
    print(
        f"duplicates: {emails.duplicates} (emails sent: {emails.sent}, {went_out}: "
        f"{emails.files}, not sent: {emails.not_sent}, sent after a retried claim: "
        f"{emails.retried})"
    )
    print(f"emails lost: {emails.lost} (sent in the email log, never went out)")
    print(f"refused: {len(intake.refused)} (intake requests answered 4xx for good)")
    for refused in intake.refused[:20]:
        print(f"  {refused}")
    print(f"extra cases: {len(extra)} (case workflows no answer named: a request run twice)")
    for workflow_id in extra[:20]:
        print(f"  {workflow_id}")
    print(f"requests: {intake.requests}, sent again: {intake.resent}")
    failed = lost or report.differences or emails.duplicates or emails.not_sent or emails.lost
    return 1 if failed or intake.refused or extra else 0


def main(plan: Plan) -> int:
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    with ExitStack() as stack:
        database_url = None
        if plan.database_url != SQLITE:
            shown = make_url(plan.database_url).render_as_string()
            print(f"chaos: emptying {shown} (waits while another run holds it)", flush=True)
            database_url = stack.enter_context(exclusive_database(plan.database_url))
        return asyncio.run(run(plan, work, database_url))


def cli() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--collections", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--apis", type=int, default=2, help="API processes")
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds, on average")
    parser.add_argument("--chaos-seconds", type=float, default=120.0, help="how long to kill")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=600.0,
        help="after the chaos, how long a workflow may take to end before it counts as lost",
    )
    parser.add_argument(
        "--database-url",
        default=DATABASE_URL,
        help=f"PostgreSQL, emptied at start (default {DATABASE_URL}), or '{SQLITE}'",
    )
    parser.add_argument(
        "--smtp",
        action="store_true",
        help="email over SMTP to a server of the run's own, SIGKILLed and restarted once",
    )
    args = parser.parse_args()
    if args.workers < 1 or args.apis < 1:
        parser.error("--workers and --apis: at least 1")
    return main(
        Plan(
            cases=args.cases,
            collections=args.collections,
            workers=args.workers,
            apis=args.apis,
            kill_every=args.kill_every,
            chaos_seconds=args.chaos_seconds,
            settle_seconds=args.settle_seconds,
            database_url=args.database_url,
            smtp=args.smtp,
        )
    )


if __name__ == "__main__":
    sys.exit(cli())
