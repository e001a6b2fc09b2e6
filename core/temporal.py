"""One way to reach Temporal: Temporal's env config (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API
key, or a profile file), localhost:7233 as the fallback, and the data converter: pydantic payloads
encrypted by the payload codec and sealed to their workflow, failure messages encrypted with them,
each argument stamped with the handler and the action it is for (`StampActions`). The worker's
converter also marks what reached it in clear or out of place, so its workflows refuse it
(docs/security.md, "Trust boundary")."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from temporalio.api.failure.v1 import Failure
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    SignalWorkflowInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    StartWorkflowUpdateWithStartInput,
    WorkflowHandle,
    WorkflowUpdateHandle,
)
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
from core.ids import ulid
from core.sealing import REFUSED, SealAwarePayloadConverter, StampingPayloadConverter, stamped
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
        payload_converter_class=SealAwarePayloadConverter if worker else StampingPayloadConverter,
        payload_codec=EncryptionCodec(load_keyring(settings), mark_unsealed=worker),
        failure_converter_class=RefusalsInClear,
    )


def new_action_id() -> str:
    """A ULID: unique for ever, and in the order the actions were made."""
    return ulid(datetime.now(UTC), secrets.randbits(80))


class StampActions(Interceptor):
    """Every start, signal, update and query a client sends carries, sealed with each argument,
    the handler it is for and an action id of its own: a sealed argument copied from a history
    opens only in its workflow, as its handler, once (workflows/sealed.py)."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Stamping(next)


class _Stamping(OutboundInterceptor):
    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        action = new_action_id()
        input.args = stamped(input.args, f"start:{input.workflow}", action)
        if input.start_signal:
            input.start_signal_args = stamped(
                input.start_signal_args, f"signal:{input.start_signal}", action
            )
        return await super().start_workflow(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        input.args = stamped(input.args, f"signal:{input.signal}", new_action_id())
        await super().signal_workflow(input)

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        input.args = stamped(input.args, f"update:{input.update}", new_action_id())
        return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(
        self, input: StartWorkflowUpdateWithStartInput
    ) -> WorkflowUpdateHandle[Any]:
        action = new_action_id()
        start, update = input.start_workflow_input, input.update_workflow_input
        start.args = stamped(start.args, f"start:{start.workflow}", action)
        update.args = stamped(update.args, f"update:{update.update}", action)
        return await super().start_update_with_start_workflow(input)

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        input.args = stamped(input.args, f"query:{input.query}", new_action_id())
        return await super().query_workflow(input)


def client_interceptors(settings: Settings) -> list[Interceptor]:
    """Every client's: the stamps, and Temporal's tracing one when tracing is on."""
    return [StampActions(), *tracing.interceptors(settings)]


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
    """`interceptors`: by default `client_interceptors` (given ones come after the stamps)."""
    settings = settings or load_settings()
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return await Client.connect(
        **config,
        data_converter=data_converter(settings),
        runtime=runtime,
        interceptors=client_interceptors(settings)
        if interceptors is None
        else [StampActions(), *interceptors],
    )
