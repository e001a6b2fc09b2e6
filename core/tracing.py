"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: the API's request, the
Temporal client's start or update, the workflow and each activity, as one trace.

`configure()` installs the process's tracer provider (OTLP over HTTP, batched); `interceptors()`
are Temporal's (`temporalio.contrib.opentelemetry`) for a client, which its workers inherit.
Spans carry ids and names (workflow type and id, activity type), never a payload.
"""

from __future__ import annotations

from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from core.settings import Settings


def enabled(settings: Settings) -> bool:
    return bool(settings.otel_exporter_otlp_endpoint)


def configure(settings: Settings, service_name: str) -> bool:
    """Install the global tracer provider exporting to the settings' endpoint; False when off."""
    if not enabled(settings):
        return False
    # imported only when on: the exporter brings an HTTP client of its own
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = str(settings.otel_exporter_otlp_endpoint).rstrip("/")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    return True


def interceptors(settings: Settings) -> list[Interceptor]:
    """Temporal's tracing interceptor when tracing is on (it follows the global provider)."""
    return [TracingInterceptor()] if enabled(settings) else []
