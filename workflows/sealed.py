"""Only key holders act, each action where and once as it was meant: a workflow refuses input that
reached the worker in clear, sealed for another workflow, stamped for another handler, or sent
again.

Encryption keeps what customers wrote from being read; AES-GCM also authenticates, so a payload
sealed under a configured key comes from a key holder (the worker, the API, the CLI, the
workspace). The seal binds the namespace and the workflow id (core/codec.py), and inside it each
argument carries the handler it is for and the id of the action it belongs to (core/sealing.py).
Whoever reaches the namespace without a key can send plain JSON, or copy a sealed argument out of a
history: the worker's codec marks both, and this interceptor refuses them before they change
anything.

- An update: refused in its validator, so it is rejected and nothing reaches the history.
- A query: refused (a query changes nothing, but answers only key holders).
- A signal lands before anything can refuse it: it is recorded as refused and changes nothing.
- A start: the run fails at once, before it does anything (one sealed before payloads were bound
  to a place is taken: it is a run continued by the previous release).

Each workflow remembers the actions it took (`RemembersActions`, carried into its next run), so a
sealed argument sent again, even to its own place, acts once.

Validators do not run on replay, so an update a history accepted replays as accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    SignalExternalWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from core.ids import ulid
from core.sealing import (
    NOT_SEALED,
    WHY,
    Seal,
    SealAwarePayloadConverter,
    SealState,
    refusal,
    seal_aware,
    stamped,
)


@runtime_checkable
class RecordsRefusals(Protocol):
    """A workflow that records a refused signal in its timeline (workflows/base.py)."""

    def refuse_signal(self, signal: str, why: str) -> bool: ...


@runtime_checkable
class RemembersActions(Protocol):
    """A workflow that remembers the actions it took, across its runs (workflows/base.py)."""

    def knows_action(self, action_id: str) -> bool: ...

    def remember_action(self, action_id: str) -> None: ...


def _converter() -> SealAwarePayloadConverter:
    converter = seal_aware(workflow.payload_converter())
    if converter is None:  # never run the rule blind: the workflow task fails, visibly
        raise RuntimeError(
            "the worker's data converter cannot tell sealed input from plain: build it with "
            "core.temporal.data_converter(settings, worker=True)"
        )
    return converter


def _seals(args: Sequence[Any]) -> list[Seal]:
    return _converter().take_seals(args)


def _out_of_place(seals: Sequence[Seal], *, legacy: bool = False) -> SealState | None:
    """The first reason an argument did not open here as sealed (`legacy` taken as sealed)."""
    for seal in seals:
        if seal.state is SealState.SEALED or (legacy and seal.state is SealState.LEGACY):
            continue
        return seal.state
    return None


def _stamp_problem(seals: Sequence[Seal], handler: str) -> str | None:
    if not seals:
        return "it carries no sealed argument"
    for seal in seals:
        if seal.handler != handler:
            meant = f"for `{seal.handler}`" if seal.handler else "for no handler"
            return f"its argument was sealed {meant}, not `{handler}`"
    if len({seal.action_id for seal in seals}) != 1:
        return "its arguments belong to different actions"
    return None


def _action(seals: Sequence[Seal]) -> str | None:
    return seals[0].action_id if seals else None


def _remembering() -> RemembersActions | None:
    instance = workflow.instance()
    return instance if isinstance(instance, RemembersActions) else None


def _remember(action: str | None) -> None:
    remembering = _remembering()
    if action is not None and remembering is not None:
        remembering.remember_action(action)


class _RefuseUnsealed(WorkflowInboundInterceptor):
    def __init__(self, next: WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        # updates accepted by their validator whose handler has not run yet: update id -> action
        self._pending: dict[str, str] = {}

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_StampSignals(outbound))

    def _known(self, action_id: str) -> bool:
        remembering = _remembering()
        known = remembering is not None and remembering.knows_action(action_id)
        return known or action_id in self._pending.values()

    def _problem(self, seals: Sequence[Seal], handler: str) -> str | None:
        state = _out_of_place(seals)
        if state is not None:
            return f"its argument {WHY[state]}"
        problem = _stamp_problem(seals, handler)
        if problem is not None:
            return problem
        action = _action(seals)
        if action is not None and self._known(action):
            return f"action {action} was taken already (the same sealed argument sent again)"
        return None

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        seals = _seals(input.args)
        state = _out_of_place(seals, legacy=True)
        kind = workflow.info().workflow_type
        if state is SealState.CLEAR:
            raise refusal(f"{kind} refused: its start input {NOT_SEALED}; nothing was done")
        if state is not None:
            raise refusal(f"{kind} refused: its start input {WHY[state]}; nothing was done")
        meant = {seal.handler for seal in seals} - {None, f"start:{kind}"}
        if meant:
            raise refusal(f"{kind} refused: its start input was sealed for `{meant.pop()}`")
        return await super().execute_workflow(input)

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        seals = _seals(input.args)
        problem = self._problem(seals, f"update:{input.update}")
        if problem is not None:
            raise refusal(f"update `{input.update}` refused: {problem}")
        super().handle_update_validator(input)
        action = _action(seals)
        if action is not None:
            self._pending[input.id] = action

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        # live, the validator checked the seals; on replay validators do not run, and an update in
        # the history was accepted: its action is remembered all the same
        action = self._pending.pop(input.id, None)
        _remember(action if action is not None else _action(_seals(input.args)))
        return await super().handle_update_handler(input)

    async def handle_query(self, input: HandleQueryInput) -> Any:
        seals = _seals(input.args)
        state = _out_of_place(seals)
        problem = f"its argument {WHY[state]}" if state is not None else None
        if problem is None and seals:
            problem = _stamp_problem(seals, f"query:{input.query}")
        if problem is not None:
            raise refusal(f"query `{input.query}` refused: {problem}")
        return await super().handle_query(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        seals = _seals(input.args)
        problem = self._problem(seals, f"signal:{input.signal}")
        if problem is not None:
            why = f"signal `{input.signal}` refused: {problem}; nothing changed"
            instance = workflow.instance()
            recorded = not isinstance(instance, RecordsRefusals) or instance.refuse_signal(
                input.signal, why
            )
            if recorded:  # a flood is logged as it is recorded: counted, not line by line
                workflow.logger.warning(why)
            return
        _remember(_action(seals))
        await super().handle_signal(input)


class _StampSignals(WorkflowOutboundInterceptor):
    """A workflow's signals to another carry a stamp of their own: an id made of the workflow's
    clock, its run and a count (replayed alike; no draw from its random source, which its own
    code uses)."""

    def __init__(self, next: WorkflowOutboundInterceptor) -> None:
        super().__init__(next)
        self._sent = 0

    def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> Any:
        self._sent += 1
        action = workflow_action_id(workflow.now(), workflow.info().run_id, self._sent)
        input.args = stamped(input.args, f"signal:{input.signal}", action)
        return super().signal_external_workflow(input)


def workflow_action_id(now: datetime, run_id: str, count: int) -> str:
    digest = hashlib.sha256(f"{run_id}\n{count}".encode()).digest()
    return ulid(now, int.from_bytes(digest[:10], "big"))


class RefuseUnsealed(Interceptor):
    """The worker's interceptor; its data converter must be `data_converter(..., worker=True)`."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _RefuseUnsealed
