"""The product's own metrics (prometheus-client), incremented where the thing happens: the
activities (emails, SendGrid, Partner Center), the API (intake requests), the service (update
refusals, imports) and the worker (workflows needing attention).

Labels are closed sets chosen by the code (a template, an outcome, an endpoint, a status class,
an error type): never a customer's name, address, id or any text that came from outside.
Workflows never import this module: they stay deterministic (tests/test_workflow_imports.py).

`serve()` is the worker's HTTP endpoint: `/metrics`, `/healthz` (the process answers) and
`/ready` (it polls its task queue and the database answers), on WORKER_METRICS_PORT.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

EMAILS = Counter(
    "billing_emails",
    "Emails by template and outcome: sent, duplicate (sent before), rejected (for good), "
    "failed (to be retried)",
    ["template", "outcome"],
)
SENDGRID_RESPONSES = Counter(
    "billing_sendgrid_responses",
    "SendGrid's answers by status class (2xx, 4xx, 429, 5xx) or unreachable",
    ["status_class"],
)
PARTNER_CENTER_CALLS = Counter(
    "billing_partner_center_calls",
    "Subscription changes asked of Partner Center (or the dry run) by change and result: "
    "changed, unchanged, refused (for good), unavailable (retried), error",
    ["change", "result"],
)
IMPORT_LINES = Counter(
    "billing_import_lines",
    "Lines of billing-run failure files by result: started, joined, rejected",
    ["result"],
)
INTAKE_REQUESTS = Counter(
    "billing_intake_requests",
    "Requests to the HTTP intake by endpoint and status code",
    ["endpoint", "status"],
)
INTAKE_SECONDS = Histogram(
    "billing_intake_request_seconds",
    "Time to answer an intake request, by endpoint",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UPDATE_REFUSALS = Counter(
    "billing_update_refusals",
    "Actions on a workflow (updates) it refused, by the refusal's error type",
    ["reason"],
)
NEEDS_ATTENTION = Gauge(
    "billing_workflows_needing_attention",
    "Running workflows a person must act on now, by reason (core.models.Attention: failed-step, "
    "suspension-approval, …), from "
    "Temporal's visibility count on a slow interval",
    ["reason"],
)
STAFF_ALERTS = Counter(
    "billing_staff_alerts",
    "Alerts to the staff's group robots by service (wecom, dingtalk, feishu) and outcome: queued, "
    "sent, rate_limited (kept, posted later), retried (an error, tried again), failed (for good)",
    ["service", "outcome"],
)
STAFF_ALERTS_PENDING = Gauge(
    "billing_staff_alerts_pending",
    "Alerts queued for a group robot and not posted yet, by service",
    ["service"],
)

EMAIL_OUTCOMES = ("sent", "duplicate", "rejected", "failed")
ALERT_OUTCOMES = ("queued", "sent", "rate_limited", "retried", "failed")
STATUS_CLASSES = ("2xx", "4xx", "429", "5xx", "unreachable")
PARTNER_CENTER_RESULTS = ("changed", "unchanged", "refused", "unavailable", "error")
IMPORT_RESULTS = ("started", "joined", "rejected")


def status_class(status: int | None) -> str:
    """A SendGrid answer as a label: 429 apart (rate limited), else its hundreds."""
    if status is None:
        return "unreachable"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def preset(templates: list[str], changes: list[str], services: tuple[str, ...] = ()) -> None:
    """Every series at zero from the start: an alert's rate() sees the first failure too."""
    for template in templates:
        for outcome in EMAIL_OUTCOMES:
            EMAILS.labels(template, outcome)
    for cls in STATUS_CLASSES:
        SENDGRID_RESPONSES.labels(cls)
    for change in changes:
        for result in PARTNER_CENTER_RESULTS:
            PARTNER_CENTER_CALLS.labels(change, result)
    for service in services:
        for outcome in ALERT_OUTCOMES:
            STAFF_ALERTS.labels(service, outcome)


def _handler(ready: Callable[[], str | None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._answer(200, b"ok\n")
            elif path in ("/ready", "/readyz"):
                problem = ready()
                if problem is None:
                    self._answer(200, b"ready\n")
                else:
                    self._answer(503, f"not ready: {problem}\n".encode())
            else:
                self._answer(404, b"/metrics, /healthz or /ready\n")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every few seconds is not news

    return Handler


def serve(host: str, port: int, ready: Callable[[], str | None]) -> ThreadingHTTPServer:
    """`/metrics`, `/healthz` and `/ready` on a daemon thread; `ready` answers None when ready,
    else what is wrong. `server.shutdown()` stops it."""
    server = ThreadingHTTPServer((host, port), _handler(ready))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
