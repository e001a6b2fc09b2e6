"""One way to reach Temporal: Temporal's env config (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API
key, or a profile file), localhost:7233 as the fallback, and the one data converter: pydantic
payloads encrypted by the payload codec, failure messages encrypted with them."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from core import tracing
from core.codec import EncryptionCodec, load_keyring
from core.settings import Settings, load_settings

DEFAULT_ADDRESS = "localhost:7233"


def data_converter(settings: Settings) -> DataConverter:
    """Raises SettingsError when no encryption key is configured: nothing goes out in clear."""
    return DataConverter(
        payload_converter_class=PydanticPayloadConverter,
        payload_codec=EncryptionCodec(load_keyring(settings)),
        # an error message can quote customer data: it travels encrypted like the payloads
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def sdk_runtime(settings: Settings) -> Runtime | None:
    """The SDK's own metrics (schedule-to-start latency, slots, pollers, sticky cache) served for
    Prometheus on TEMPORAL_METRICS_PORT; None (the default runtime, no metrics) when unset. A
    runtime is made before the client that uses it, once per process."""
    if settings.temporal_metrics_port is None:
        return None
    address = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
    # seconds and _total as Prometheus names them, so dashboards need no unit juggling
    metrics = PrometheusConfig(address, counters_total_suffix=True, durations_as_seconds=True)
    return Runtime(telemetry=TelemetryConfig(metrics=metrics))


async def connect(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] | None = None,
) -> Client:
    """`interceptors`: by default Temporal's tracing one when tracing is on (core/tracing.py)."""
    settings = settings or load_settings()
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return await Client.connect(
        **config,
        data_converter=data_converter(settings),
        runtime=runtime,
        interceptors=tracing.interceptors(settings) if interceptors is None else interceptors,
    )
