"""The worker: builds the settings and clients, wires them into the activities, runs every workflow.

Run it with `python worker.py` (make run does). It stops cleanly on Ctrl-C / SIGTERM: running
activities finish or are retried elsewhere, and every case stays in Temporal and the database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Replayer, Worker

from activities.alert_dispatch import AlertDispatcher
from activities.alerts import AlertOutbox
from activities.case_store import CaseStoreActivities
from activities.email import EmailActivities
from activities.escalation import EscalationActivities
from activities.graph import GraphSender
from activities.partner_center import (
    DryRunBackend,
    PartnerCenterActivities,
    PartnerCenterBackend,
    PartnerCenterClient,
    SubscriptionBackend,
)
from activities.rendering import TemplateRenderer
from activities.robots import RobotClient
from activities.senders import EmailSender, FileOutboxSender, SendGridSender
from activities.smtp import SendingRate, SmtpSender
from activities.staff import StaffDirectory
from activities.vianet_invoice import VianetInvoiceActivities
from core import deployment, logs, metrics, search, tracing
from core.alerts import RobotService
from core.graph import graph_client, m365_credentials
from core.models import EmailTemplate, SubscriptionStatus
from core.settings import EmailBackend, Settings, load_settings
from core.temporal import connect, data_converter, sdk_runtime
from db.session import database_problem, make_engine, make_session_factory
from workflows import workflow_runner
from workflows.account import AccountWorkflow
from workflows.billing_case import BillingCaseWorkflow
from workflows.collections import CollectionsWorkflow
from workflows.sealed import RefuseUnsealed
from workflows.vianet_invoice import VianetInvoiceWorkflow

log = logging.getLogger("worker")

WORKFLOWS = [BillingCaseWorkflow, CollectionsWorkflow, VianetInvoiceWorkflow, AccountWorkflow]
GC_THRESHOLD = 5_000  # allocations between young collections (Python's default: 700)


def build_sender(settings: Settings) -> EmailSender:
    if settings.email_backend is EmailBackend.SENDGRID:
        assert settings.sendgrid_api_key is not None  # checked when the settings load
        return SendGridSender(settings.sendgrid_api_key.get_secret_value(), settings.sendgrid_host)
    if settings.email_backend is EmailBackend.SMTP:
        return build_smtp_sender(settings)
    if settings.email_backend is EmailBackend.GRAPH:
        return GraphSender(graph_client(settings, "EMAIL_BACKEND=graph"))
    return FileOutboxSender(settings.outbox_dir)


def build_smtp_sender(settings: Settings) -> SmtpSender:
    """The SMTP sender of the settings (checked when they load); with SMTP_AUTH=xoauth2 its
    tokens come from the Microsoft 365 app (M365_*), cached and refreshed."""
    assert settings.smtp_host is not None
    token: Callable[[], str] | None = None
    username = settings.smtp_username or ""
    if settings.smtp_auth == "xoauth2":
        credentials = m365_credentials(settings, settings.m365_mail_scope, "SMTP_AUTH=xoauth2")

        def bearer() -> str:
            return credentials.bearer()[0]

        token, username = bearer, username or settings.shared_mailbox()
    password = settings.smtp_password
    rate = settings.smtp_max_per_minute
    return SmtpSender(
        settings.smtp_host,
        settings.smtp_port,
        security=settings.smtp_security,
        auth=settings.smtp_auth,
        username=username,
        password=password.get_secret_value() if password is not None else "",
        token=token,
        envelope_from=str(settings.smtp_envelope_from or settings.email_from),
        timeout=settings.smtp_timeout_seconds,
        rate=SendingRate(rate) if rate else None,
    )


def build_subscription_backend(settings: Settings) -> SubscriptionBackend:
    if settings.partner_center_backend == "partner-center":
        # checked when the settings load
        assert settings.partner_center_tenant_id and settings.partner_center_client_id
        assert settings.partner_center_client_secret is not None
        return PartnerCenterBackend(
            PartnerCenterClient(
                settings.partner_center_tenant_id,
                settings.partner_center_client_id,
                settings.partner_center_client_secret,
                base_url=settings.partner_center_url,
                authority=settings.partner_center_authority,
                scope=settings.partner_center_scope,
            )
        )
    return DryRunBackend()


def build_activities(settings: Settings) -> list[Callable[..., Any]]:
    """Every activity, its clients built from the settings: the one place that wires them."""
    sessions = make_session_factory(make_engine(settings.database_url))
    renderer = TemplateRenderer(
        settings.templates_dir, settings.letterhead(), settings.rating_links()
    )
    alerts = AlertOutbox(
        settings.robots(),
        renderer,
        sessions,
        settings.workspace_url(),
        settings.staff_alerts_locale,
    )
    email = EmailActivities(
        renderer,
        build_sender(settings),
        sessions,
        str(settings.email_from),
        settings.email_from_name,
        threads=settings.email_threads(),
        alerts=alerts,
        files=settings.attachments_dir,
        staff=StaffDirectory(sessions, settings.workspace_url(), settings.staff_alerts_locale),
    )
    store = CaseStoreActivities(sessions)
    escalation = EscalationActivities(renderer, sessions)
    partner_center = PartnerCenterActivities(build_subscription_backend(settings), sessions)
    vianet_invoices = VianetInvoiceActivities(sessions)
    return [
        store.persist_case,
        store.persist_collections,
        store.persist_account,
        email.send_email,
        escalation.prepare_escalation,
        escalation.record_escalation,
        partner_center.change_subscription,
        vianet_invoices.persist_vianet_invoice,
    ]


def worker_client(client: Client, settings: Settings) -> Client:
    """`client`'s connection with the worker's data converter, which marks what reached it in
    clear (`client` keeps its own, which reads a plain payload as it is)."""
    config = client.config()
    config["data_converter"] = data_converter(settings, worker=True)
    return Client(**config)


class Workers:
    """One worker per task queue, run and stopped together: the invoices' (with the accounts
    and 21Vianet invoices) and the cases', each with its own cache, slots and activity threads,
    so a billing run's thousands of workflows neither queue ahead of an agent's update nor evict
    the cases from the cache (core/settings.py `cases_task_queue`). Each registers everything:
    a case started on the first queue (by an older build) still runs there."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers

    async def __aenter__(self) -> Workers:
        for worker in self.workers:
            await worker.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.gather(*(worker.__aexit__(*exc) for worker in self.workers))

    @property
    def is_running(self) -> bool:
        return all(worker.is_running for worker in self.workers)

    @property
    def is_shutdown(self) -> bool:
        return any(worker.is_shutdown for worker in self.workers)

    async def run(self) -> None:
        await asyncio.gather(*(worker.run() for worker in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(worker.shutdown() for worker in self.workers))


def build_worker(client: Client, settings: Settings) -> Workers:
    """Every workflow and activity on each task queue, the interceptor that refuses input sent
    in clear (workflows/sealed.py), and the deployment version they poll as (core/deployment.py)."""
    connection = worker_client(client, settings)
    activities = build_activities(settings)
    return Workers(
        [
            Worker(
                connection,
                deployment_config=deployment.deployment_config(settings),
                task_queue=task_queue,
                workflows=WORKFLOWS,
                activities=activities,
                activity_executor=ThreadPoolExecutor(
                    max_workers=settings.max_concurrent_activities
                ),
                max_concurrent_activities=settings.max_concurrent_activities,
                max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
                max_cached_workflows=settings.max_cached_workflows,
                workflow_runner=workflow_runner(settings.workflow_sandbox),
                interceptors=[RefuseUnsealed()],
            )
            for task_queue in settings.polled_task_queues()
        ]
    )


def tune_garbage_collector() -> None:
    """Every cached workflow keeps ~190 objects the collector tracks (~400 in the sandbox, with its
    copy of the module): with a thousand of them a full collection took 0.2-1 s, every few seconds
    while workflows start, and an agent's update waited behind it (docs/performance.md). What
    was imported at start-up lives as long as the worker: freeze it out of every collection, and
    collect the young generation less often. Measured in the sandbox with 3,000 collections, a
    cache of 1,000 and a burst of updates on evicted ones: 32 full collections became 9, the p95
    of those updates 514 ms became 148 ms, peak RSS 464 MiB became 582 MiB."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


# --------------------------------------------------------------------------- operating it


def readiness(worker: Workers, settings: Settings) -> Callable[[], str | None]:
    """Ready: the worker polls its task queue and the database answers; else what is not."""
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=1)

    def problem() -> str | None:
        if not worker.is_running or worker.is_shutdown:
            return "worker: not polling"
        return database_problem(engine)

    return problem


async def count_attention(client: Client, settings: Settings) -> None:
    """The workflows needing attention as a gauge, counted on a slow interval: a visibility
    query is cheap but not free, and the count is a state (it falls when a person acts), which a
    counter of the manager's emails could not say."""
    while True:
        try:
            counts = await search.count_needing_attention(client, settings.task_queues())
        except Exception as err:  # Temporal away: keep the last counts, say so, try again
            log.warning("could not count the workflows needing attention: %s", type(err).__name__)
        else:
            for reason, count in counts.items():
                metrics.NEEDS_ATTENTION.labels(reason).set(count)
        await asyncio.sleep(settings.attention_interval_seconds)


async def dispatch_alerts(settings: Settings) -> None:
    """The staff alerts queued in the outbox, posted to their robots (activities/alert_dispatch.py):
    in every worker process, so alerts go wherever workers run, and one that dies leaves its
    claims to the others."""
    robots = settings.robots()
    if not robots:
        return
    sessions = make_session_factory(make_engine(settings.database_url, pool_size=2))
    client = RobotClient()
    try:
        await AlertDispatcher(robots, sessions, client).run()
    finally:
        await client.aclose()


@asynccontextmanager
async def operated(worker: Workers, client: Client, settings: Settings) -> AsyncIterator[None]:
    """While the worker runs: its /metrics, /healthz and /ready (when WORKER_METRICS_PORT is
    set), the count of the workflows needing attention and the staff alerts' dispatcher."""
    metrics.preset(
        [t.value for t in EmailTemplate],
        [s.value for s in SubscriptionStatus],
        tuple(s.value for s in RobotService),
    )
    server = None
    if settings.worker_metrics_port is not None:
        server = metrics.serve(
            settings.metrics_host, settings.worker_metrics_port, readiness(worker, settings)
        )
    counting = asyncio.create_task(count_attention(client, settings))
    alerting = asyncio.create_task(dispatch_alerts(settings))
    try:
        yield
    finally:
        counting.cancel()
        alerting.cancel()
        if server is not None:
            await asyncio.to_thread(server.shutdown)


async def take_over(client: Client, settings: Settings) -> deployment.TakeOver:
    """The local stack's upgrade (WORKER_TAKE_OVER, `make run`): this version becomes current
    and adopts the older builds' open pinned runs that replay on this code; the others are
    named with what to do. A production deploy does this step by step (docs/production.md)."""
    version = deployment.deployment_version(settings)
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(settings, worker=True),
        interceptors=[RefuseUnsealed()],
        workflow_runner=workflow_runner(settings.workflow_sandbox),
    )
    try:
        done = await deployment.take_over(client, version, replayer)
    except RPCError as err:  # the worker serves all the same: the next start tries again
        log.error("take-over of version %s failed: %s", deployment.search_value(version), err)
        return deployment.TakeOver()
    log.info(
        "version %s is current; %d open workflow(s) of older builds moved to it",
        deployment.search_value(version),
        len(done.moved),
    )
    for advice in deployment.stranded_advice(version.deployment_name, done.left):
        log.warning("%s", advice)
    return done


# ---------------------------------------------------------------------------


async def main() -> None:
    settings = load_settings()
    logs.configure(settings.log_format)
    tracing.configure(settings, "billing-support-worker")
    client = await connect(settings, runtime=sdk_runtime(settings))
    worker = build_worker(client, settings)
    tune_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker on task queues %s, database %s, email %s, version %s",
        ", ".join(settings.polled_task_queues()),
        settings.database_url.split("@")[-1],
        settings.email_backend.value,
        deployment.search_value(deployment.deployment_version(settings))
        if settings.worker_versioning
        else "unversioned",
    )
    async with worker, operated(worker, client, settings):
        if settings.worker_versioning and settings.worker_take_over:
            await take_over(client, settings)
        await stop.wait()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
