"""Only key holders act: a workflow refuses input that reached the worker in clear.

Encryption keeps what customers wrote from being read; AES-GCM also authenticates, so a payload
sealed under a configured key comes from a key holder (the worker, the API, the CLI, the codec
endpoint behind its token). Whoever reaches the namespace without a key can still send plain JSON:
the worker's codec marks it (core/sealing.py) and this interceptor refuses it before it changes
anything.

- An update: refused in its validator, so it is rejected and nothing reaches the history.
- A query: refused (a query changes nothing, but answers only key holders).
- A signal lands before anything can refuse it: it is recorded as refused and changes nothing.
- A start: the run fails at once, before it does anything.

What a history recorded before this rule holds still replays (the exception is the payload's place
in an already-recorded history): validators do not run on replay, and a plain start and each plain
signal ask a patch of their own, which a history from before this release does not have there. From
now on every run refuses, those started before encryption too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from core.sealing import NOT_SEALED, SealAwarePayloadConverter, refusal, seal_aware

# the patch the start asks, and each plain signal (numbered in the run): since this release
REFUSE_UNSEALED = "refuse-unsealed"


@runtime_checkable
class RecordsRefusals(Protocol):
    """A workflow that records a refused signal in its timeline (workflows/base.py)."""

    def refuse_signal(self, signal: str, why: str) -> None: ...


def _converter() -> SealAwarePayloadConverter:
    converter = seal_aware(workflow.payload_converter())
    if converter is None:  # never run the rule blind: the workflow task fails, visibly
        raise RuntimeError(
            "the worker's data converter cannot tell sealed input from plain: build it with "
            "core.temporal.data_converter(settings, worker=True)"
        )
    return converter


def _unsealed(args: Sequence[Any]) -> bool:
    return _converter().take_unsealed(args)


class _RefuseUnsealed(WorkflowInboundInterceptor):
    def __init__(self, next: WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self._signals = 0  # plain signals this run has taken so far: each asks its own patch

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if _unsealed(input.args) and workflow.patched(REFUSE_UNSEALED):
            kind = workflow.info().workflow_type
            raise refusal(f"{kind} refused: its start input {NOT_SEALED}; nothing was done")
        return await super().execute_workflow(input)

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        if _unsealed(input.args):
            raise refusal(f"update `{input.update}` refused: its argument {NOT_SEALED}")
        super().handle_update_validator(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        # live, the validator refused plain input; on replay validators do not run, and an
        # update in the history was accepted
        _unsealed(input.args)
        return await super().handle_update_handler(input)

    async def handle_query(self, input: HandleQueryInput) -> Any:
        if _unsealed(input.args):
            raise refusal(f"query `{input.query}` refused: its argument {NOT_SEALED}")
        return await super().handle_query(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        if _unsealed(input.args):
            self._signals += 1
            if workflow.patched(f"{REFUSE_UNSEALED}-signal-{self._signals}"):
                why = f"signal `{input.signal}` refused: its argument {NOT_SEALED}; nothing changed"
                workflow.logger.warning(why)
                instance = workflow.instance()
                if isinstance(instance, RecordsRefusals):
                    instance.refuse_signal(input.signal, why)
                return
        await super().handle_signal(input)


class RefuseUnsealed(Interceptor):
    """The worker's interceptor; its data converter must be `data_converter(..., worker=True)`."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _RefuseUnsealed
