"""One way to reach Temporal: Temporal's env config (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API
key, or a profile file), localhost:7233 as the fallback, and the data converter: pydantic payloads
encrypted by the payload codec, failure messages encrypted with them. The worker's converter also
marks what reached it in clear, so its workflows refuse it (README, "Trust boundary")."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadConverter,
)
from temporalio.envconfig import ClientConfig
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from core import tracing
from core.codec import EncryptionCodec, load_keyring
from core.sealing import REFUSED, SealAwarePayloadConverter
from core.settings import Settings, load_settings

DEFAULT_ADDRESS = "localhost:7233"


class RefusalsInClear(DefaultFailureConverterWithEncodedAttributes):
    """Every failure message encrypted (an error can quote customer data), except the refusal of
    input that came in clear: its sender has no key to read it, and it quotes no data."""

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        if isinstance(exception, ApplicationError) and exception.type == REFUSED:
            DefaultFailureConverter().to_failure(exception, payload_converter, failure)
            failure.stack_trace = ""
        else:
            super().to_failure(exception, payload_converter, failure)


def data_converter(settings: Settings, *, worker: bool = False) -> DataConverter:
    """Raises SettingsError when no encryption key is configured: nothing goes out in clear.

    Clients (CLI, API, tests) read a payload stored in clear as it is (histories from before
    encryption); the worker's (`worker=True`) marks it, and its workflows refuse it as input."""
    return DataConverter(
        payload_converter_class=SealAwarePayloadConverter if worker else PydanticPayloadConverter,
        payload_codec=EncryptionCodec(load_keyring(settings), mark_unsealed=worker),
        failure_converter_class=RefusalsInClear,
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
