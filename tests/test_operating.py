"""Operating it, on the real dev server, worker, activities and API: the SDK's and the product's
metrics after a case and a collections run, readiness when the database goes away and comes back,
one trace from the webhook to the email, JSON logs without customer data, and the alert rules and
the dashboard naming only metrics a live worker exports.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.partner_center import (
    DryRunBackend,
    PartnerCenterActivities,
    PartnerCenterError,
    PartnerCenterForbidden,
    PartnerCenterUnavailable,
    SubscriptionBackend,
)
from activities.senders import EmailDeliveryError, EmailRejected, SendGridSender
from api.app import create_app
from core import logs, tracing
from core.models import AddNote, RetryStep, SubscriptionStatus
from core.settings import Settings
from core.temporal import StampActions, sdk_runtime
from db.migrate import upgrade
from service import Kind, Service
from tests.clock_support import eventually
from tests.hostile import poisoned_notes
from tests.intake_support import (
    PORTAL_EMAIL,
    PORTAL_NAME,
    SIGNED,
    billing_failure_body,
    failure_fields,
    guid,
    portal_case,
    post,
    unique_prefix,
)
from tests.sendgrid_standin import (
    SendGridStandIn,
    accepted,
    bad_request,
    sendgrid_standin_fixture,  # noqa: F401  (pytest fixture "sendgrid_standin")
    server_error,
    too_many_requests,
)
from tests.tcp_proxy import TcpProxy
from tests.test_partner_center import change
from tests.test_senders import outgoing
from worker import build_worker, operated

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "billing-support.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def own() -> Samples:
    """The product's metrics of this process (the worker's and the API's registry)."""
    return parse(generate_latest(REGISTRY).decode())


@dataclass
class Stack:
    client: Client
    settings: Settings
    http: httpx.AsyncClient  # the API, in process over ASGI


@asynccontextmanager
async def stack(
    env: WorkflowEnvironment,
    tmp_path: Path,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
    tracer_provider: TracerProvider | None = None,
    database_url: str | None = None,
) -> AsyncIterator[Stack]:
    """The worker (with its metrics endpoint) and the API over one client of the dev server."""
    client = await Client.connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        data_converter=env.client.data_converter,
        runtime=runtime,
        interceptors=[StampActions(), *interceptors],
    )
    settings = Settings(
        database_url=database_url or f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        task_queue=f"operating-{uuid.uuid4()}",
        worker_metrics_port=free_port(),
        attention_interval_seconds=0.5,
        **SIGNED,
    )
    upgrade(settings.database_url)
    worker = build_worker(client, settings)

    async def service() -> Service:
        return Service(client, settings)

    app = create_app(settings, service, tracer_provider=tracer_provider)
    transport = httpx.ASGITransport(app=app)
    async with (
        worker,
        operated(worker, client, settings),
        httpx.AsyncClient(transport=transport, base_url="http://intake") as http,
    ):
        yield Stack(client, settings, http)


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
    assert answer.status_code == 200, answer.text
    return parse(answer.text)


def referenced_metrics() -> set[str]:
    """Every metric the alert rules and the dashboard name."""
    texts = [ALERTS.read_text()]
    dashboard = json.loads(DASHBOARD.read_text())
    texts += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for text in texts for name in re.findall(r"\b(?:temporal|billing)_\w+", text)}


@pytest.fixture(scope="module")
def sdk_metrics() -> tuple[Runtime, int]:
    """One runtime for the module (a runtime binds its Prometheus port for good)."""
    port = free_port()
    runtime = sdk_runtime(Settings(temporal_metrics_port=port))
    assert runtime is not None
    return runtime, port


async def test_metrics_after_a_case_and_a_collections_run(
    dev_env: WorkflowEnvironment, tmp_path: Path, sdk_metrics: tuple[Runtime, int]
) -> None:
    runtime, sdk_port = sdk_metrics
    before = own()
    # the outbox is a file at first: the first emails fail (and are retried) until it is removed
    (tmp_path / "outbox").write_text("not a folder")
    async with stack(dev_env, tmp_path, runtime=runtime) as running:
        queue, http = running.settings.task_queue, running.http
        worker_url = f"http://127.0.0.1:{running.settings.worker_metrics_port}"
        opened = await post(http, "/v1/cases", portal_case(guid("tenant", unique_prefix())))
        assert opened.status_code == 201, opened.text
        invoice = unique_prefix()
        failure = billing_failure_body(invoice, f"{invoice}-F1")
        assert (await post(http, "/v1/billing-failures", failure)).status_code == 202
        assert (await post(http, "/v1/billing-failures", failure)).status_code == 202  # joined
        dollars = {
            "payment_id": f"{invoice}-P1",
            "invoice_id": invoice,
            "amount": "10.00",
            "currency": "USD",
            "received_at": "2026-11-25T10:00:00+08:00",
        }
        assert (await post(http, "/v1/payments", dollars)).status_code == 409
        imported = unique_prefix()
        lines = [failure_fields(imported, f"{imported}-F{n}") for n in (1, 2)]
        failures = tmp_path / "failures.jsonl"
        failures.write_text("".join(json.dumps(line) + "\n" for line in [*lines, {"x": 1}]))
        summary = await Service(running.client, running.settings).import_failures(failures)
        assert (summary.started, summary.joined, summary.rejected) == (1, 1, 1)

        def emails(outcome: str, template: str | None = None) -> float:
            labels = {"outcome": outcome, **({"template": template} if template else {})}
            return value(own(), "billing_emails_total", **labels) - value(
                before, "billing_emails_total", **labels
            )

        async def failed_once() -> bool:
            return emails("failed") >= 1

        await eventually(failed_once)
        (tmp_path / "outbox").unlink()
        # the case: its acknowledgement and the owner's notice; the invoices: day 0's email
        sent = {"case_acknowledged": 1, "owner_new_case": 1, "collections_payment_failed": 2}

        async def all_sent() -> bool:
            return all(emails("sent", t) == n for t, n in sent.items())

        await eventually(all_sent, seconds=60)

        async def counted() -> bool:  # the attention gauge: counted at least once
            return ("billing_workflows_needing_attention", frozenset({("reason", "stalled")})) in (
                await scrape(f"{worker_url}/metrics")
            )

        await eventually(counted)
        async with httpx.AsyncClient() as probe:
            assert (await probe.get(f"{worker_url}/ready")).status_code == 200
            assert (await probe.get(f"{worker_url}/healthz")).status_code == 200
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        assert (await http.get("/healthz")).status_code == 200

        product = await scrape(f"{worker_url}/metrics")
        api = parse((await http.get("/metrics")).text)
        sdk = await scrape(f"http://127.0.0.1:{sdk_port}/metrics")

    def grew(name: str, **labels: str) -> float:
        return value(product, name, **labels) - value(before, name, **labels)

    assert grew("billing_intake_requests_total", endpoint="/v1/cases", status="201") == 1
    assert grew("billing_intake_requests_total", endpoint="/v1/billing-failures") == 2
    assert grew("billing_intake_requests_total", endpoint="/v1/payments", status="409") == 1
    assert grew("billing_update_refusals_total", reason="ActionRefused") == 1
    assert grew("billing_import_lines_total", result="started") == 1
    assert grew("billing_import_lines_total", result="joined") == 1
    assert grew("billing_import_lines_total", result="rejected") == 1
    assert value(api, "billing_intake_request_seconds_count", endpoint="/v1/cases") >= 1
    for reason in ("failed-step", "stalled"):  # nothing of this queue waits for a person
        assert value(product, "billing_workflows_needing_attention", reason=reason) == 0
    attempts = grew("billing_emails_total")
    assert attempts == sum(sent.values()) + grew("billing_emails_total", outcome="failed")

    # the SDK's series of this worker's two task queues (the invoices' and the cases'), counted
    # alike: each queue's worker polls and has its slots
    queues = [{"task_queue": q} for q in (queue, f"{queue}-cases")]

    def both(name: str, **labels: str) -> float:
        return sum(value(sdk, name, **labels, **mine) for mine in queues)

    email = {"activity_type": "send_email"}
    assert both("temporal_activity_execution_latency_count", **email) == attempts
    assert both("temporal_activity_execution_failed_total", **email) == grew(
        "billing_emails_total", outcome="failed"
    )
    for mine in queues:
        assert value(sdk, "temporal_workflow_task_schedule_to_start_latency_count", **mine) > 0
        assert value(sdk, "temporal_num_pollers", poller_type="workflow_task", **mine) >= 1
        assert value(sdk, "temporal_worker_task_slots_available", **mine) > 0

    # no customer data in any label
    for text in (str(product), str(api), str(sdk)):
        assert PORTAL_EMAIL not in text and PORTAL_NAME not in text and invoice not in text

    exported = {name for name, _ in {**product, **api, **sdk}}
    missing = referenced_metrics() - exported
    assert not missing, f"the rules or the dashboard name metrics nobody exports: {missing}"


def test_the_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package; .ci/run adds it)")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


async def test_the_attention_gauge_counts_a_failed_step(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A save the database refuses for good: the gauge shows 1 failed step while the case waits
    for an operator, and 0 once the step is retried after the fix."""
    async with stack(dev_env, tmp_path) as running:
        service = Service(running.client, running.settings)
        gauge = f"http://127.0.0.1:{running.settings.worker_metrics_port}/metrics"

        def waiting(count: int) -> Callable[[], Awaitable[bool]]:
            async def shown() -> bool:
                samples = await scrape(gauge)
                return (
                    value(samples, "billing_workflows_needing_attention", reason="failed-step")
                    == count
                )

            return shown

        with poisoned_notes(running.settings.database_url):
            opened = await post(
                running.http, "/v1/cases", portal_case(guid("tenant", unique_prefix()))
            )
            case_id = opened.json()["case_id"]
            await service.cases.act(case_id, AddNote(text="POISON", by="agent@partner.example.cn"))
            await eventually(waiting(1), seconds=30)
        await service.retry_step(Kind.CASE, case_id, RetryStep(by="agent@partner.example.cn"))
        await eventually(waiting(0), seconds=30)


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"), reason="cutting the database needs PostgreSQL"
)
async def test_readiness_follows_the_database(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    url = make_url(os.environ["TEST_DATABASE_URL"])
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        async with (
            stack(dev_env, tmp_path, database_url=proxied) as running,
            httpx.AsyncClient() as probe,
        ):
            worker_ready = f"http://127.0.0.1:{running.settings.worker_metrics_port}/ready"

            async def answers() -> tuple[int, int]:
                api = await running.http.get("/readyz")
                return api.status_code, (await probe.get(worker_ready)).status_code

            assert await answers() == (200, 200)
            proxy.cut()
            api = await running.http.get("/readyz")
            assert api.status_code == 503
            assert [p.split(":")[0] for p in api.json()["problems"]] == ["database"]
            assert (await probe.get(worker_ready)).status_code == 503
            proxy.restore()

            async def ready_again() -> bool:
                return await answers() == (200, 200)

            await eventually(ready_again)


async def test_one_trace_from_the_webhook_to_the_email(
    dev_env: WorkflowEnvironment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    interceptor = TracingInterceptor(provider.get_tracer("tests"))
    caplog.set_level(logging.INFO)
    async with stack(
        dev_env, tmp_path, interceptors=[interceptor], tracer_provider=provider
    ) as running:
        opened = await post(running.http, "/v1/cases", portal_case(guid("tenant", unique_prefix())))
        assert opened.status_code == 201, opened.text
        workflow_id = opened.json()["workflow_id"]

        async def emailed() -> bool:
            return any(s.name == "RunActivity:send_email" for s in spans.get_finished_spans())

        await eventually(emailed)
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.name.startswith("POST /v1/cases"))
    assert request.context is not None
    trace = [s for s in finished if s.context and s.context.trace_id == request.context.trace_id]
    names = {s.name for s in trace}
    assert {
        "StartWorkflow:BillingCaseWorkflow",
        "RunWorkflow:BillingCaseWorkflow",
        "StartActivity:send_email",
        "RunActivity:send_email",
    } <= names, names

    # the same run's logs as JSON: the ids from the SDK's context, never the customer's data
    lines = [json.loads(logs.JsonFormatter().format(record)) for record in caplog.records]
    sent = [line for line in lines if line.get("activity_type") == "send_email"]
    assert sent and sent[0]["workflow_id"] == workflow_id and sent[0]["attempt"] == 1
    assert sent[0]["run_id"] and set(sent[0]) <= {
        "time",
        "level",
        "logger",
        "message",
        *logs.ACTIVITY_FIELDS,
        "run_id",
    }
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    assert PORTAL_EMAIL not in text and PORTAL_NAME not in text


def test_json_logs_never_carry_an_exception_message() -> None:
    try:
        raise ValueError(f"SendGrid 400: {PORTAL_EMAIL} bounced")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "email failed", (), None)
        record.exc_info = sys.exc_info()
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["error_type"] == "ValueError" and line["message"] == "email failed"
    assert PORTAL_EMAIL not in json.dumps(line) and line["stack"]


async def test_the_readiness_probe_names_temporal(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'billing.db'}", **SIGNED)
    upgrade(settings.database_url)

    async def unreachable() -> Service:
        raise RuntimeError("no Temporal here")

    app = create_app(settings, unreachable)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as h:
        answer = await h.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["problems"] == ["temporal: RuntimeError"]


def test_tracing_is_off_unless_an_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert tracing.interceptors(Settings(_env_file=None)) == []
    assert tracing.configure(Settings(_env_file=None), "tests") is False
    on = Settings(_env_file=None, otel_exporter_otlp_endpoint="http://collector:4318")
    assert [type(i) for i in tracing.interceptors(on)] == [TracingInterceptor]


def counted(name: str, **labels: str) -> float:
    return value(own(), name, **labels)


def test_sendgrid_answers_counted_by_status_class(sendgrid_standin: SendGridStandIn) -> None:
    answers = [accepted("m-1"), bad_request(), too_many_requests(), server_error()]
    classes = ["2xx", "4xx", "429", "5xx"]
    before = {cls: counted("billing_sendgrid_responses_total", status_class=cls) for cls in classes}
    sender = SendGridSender("SG.metrics-test-key", sendgrid_standin.host)
    for answer in answers:
        sendgrid_standin.script(answer)
        with suppress(EmailRejected, EmailDeliveryError):
            sender.send(outgoing())
    for cls in classes:
        assert counted("billing_sendgrid_responses_total", status_class=cls) == before[cls] + 1


class Refusing:
    """A Partner Center backend whose answer the test chooses."""

    name = "refusing"

    def __init__(self, error: PartnerCenterError) -> None:
        self.error = error

    def set_status(self, tenant_id: str, subscription_id: str, status: SubscriptionStatus) -> bool:
        raise self.error


@pytest.mark.parametrize(
    ("backend", "result"),
    [
        (DryRunBackend(), "changed"),
        (Refusing(PartnerCenterForbidden("HTTP 403", 403)), "refused"),
        (Refusing(PartnerCenterUnavailable("HTTP 503", 503)), "unavailable"),
    ],
    ids=["changed", "refused", "unavailable"],
)
def test_partner_center_calls_counted_by_result(
    session_factory: sessionmaker[Session], backend: SubscriptionBackend, result: str
) -> None:
    labels = {"change": "suspended", "result": result}
    before = counted("billing_partner_center_calls_total", **labels)
    activities = PartnerCenterActivities(backend, session_factory)
    with suppress(ApplicationError):
        ActivityEnvironment().run(activities.change_subscription, change())
    assert counted("billing_partner_center_calls_total", **labels) == before + 1
