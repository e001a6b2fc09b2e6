"""One translation of what Temporal answers into the service's typed errors, for every update,
query and start the service makes."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.metrics import UPDATE_REFUSALS
from core.settings import Settings
from core.temporal import connect
from db.session import shared_sessions
from service.errors import Ended, NotFound, Refused, ServiceError, Unavailable

T = TypeVar("T")

# what Temporal answers while it is down, restarting or overloaded: try again later
TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
    }
)


@dataclass(frozen=True)
class Named:
    """A workflow as people name it, for the messages of the errors about it."""

    workflow_id: str
    name: str  # "case BC-…", "invoice G…", "21Vianet invoice VN…"
    missing: str  # what "not found" means for it, e.g. "invoice G… is not in collections"
    completed: str | None = None  # what a completed one says, where it is not just "ended"


async def client_for(settings: Settings) -> Client:
    """A client with the product's data converter; Unavailable when Temporal does not answer."""
    try:
        return await connect(settings)
    except RuntimeError as err:  # the SDK's "failed client connect"
        raise Unavailable(f"Temporal is unavailable: {err}") from None


def refusal(err: WorkflowUpdateFailedError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(err)


def refusal_reason(err: WorkflowUpdateFailedError) -> str:
    """The refusal's error type (its message may quote what the caller sent): a metric label."""
    cause = err.cause
    return (cause.type or "ApplicationError") if isinstance(cause, ApplicationError) else "failed"


async def attempt(client: Client, named: Named, call: Awaitable[T]) -> T:
    """Await an update or a query of `named`; every failure becomes a typed error."""
    try:
        return await call
    except WorkflowUpdateFailedError as err:
        UPDATE_REFUSALS.labels(refusal_reason(err)).inc()
        raise Refused(refusal(err)) from None
    except WorkflowQueryFailedError as err:  # the worker failed to answer (a replay cut short)
        raise Unavailable(f"{named.name} did not answer: {err.message}") from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:  # sent again with its id, it is taken once
        raise Unavailable(f"{named.name} did not answer in time: try again") from None
    except RPCError as err:
        raise await explain(client, named, err) from None


async def explain(client: Client, named: Named, err: RPCError) -> ServiceError:
    """Why a call on `named` failed: asked of Temporal only now that it has failed."""
    if err.status in TRANSIENT:
        return Unavailable(f"Temporal is unavailable ({named.name}): {err.message}")
    try:
        described = await client.get_workflow_handle(named.workflow_id).describe()
    except RPCError as again:
        if again.status is RPCStatusCode.NOT_FOUND:
            return NotFound(f"{named.missing} (no workflow {named.workflow_id})")
        return Unavailable(f"Temporal is unavailable ({named.name}): {again.message}")
    status = described.status
    if err.status is RPCStatusCode.NOT_FOUND and status is WorkflowExecutionStatus.RUNNING:
        # it started between the call and this look (a customer's account is started by its
        # first invoice): when asked, there was none
        return NotFound(f"{named.missing} (no workflow {named.workflow_id} yet)")
    if status is WorkflowExecutionStatus.COMPLETED and named.completed:
        return Ended(named.completed)
    if status is not WorkflowExecutionStatus.RUNNING:
        state = status.name.lower() if status else "ended"
        return Ended(f"{named.name} has ended ({state}): it takes no more actions")
    return Refused(f"{named.name}: {err.message}")


def start_refused(named: Named, err: RPCError) -> ServiceError:
    """Why Temporal would not start `named` (not that it exists: the SDK raises that itself)."""
    if err.status in TRANSIENT:
        return Unavailable(f"Temporal is unavailable ({named.name}): {err.message}")
    return Refused(f"{named.name}: Temporal refused it: {err.message}")


async def start(
    client: Client, run: Any, data: Any, named: Named, task_queue: str, **options: Any
) -> bool:
    """Start `named`'s workflow under an id that is never used twice; False when it was (the
    workflow runs, or ran). Any other refusal is a typed error."""
    try:
        await client.start_workflow(
            run,
            data,
            id=named.workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            **options,
        )
    except WorkflowAlreadyStartedError:
        return False
    except RPCError as err:
        raise start_refused(named, err) from None
    return True


async def signal_if_running(client: Client, workflow_id: str, signal: str, data: Any) -> None:
    """Signal a workflow; one that has ended (or never was) is not told, and that is no error.
    Unavailable when Temporal does not answer."""
    try:
        await client.get_workflow_handle(workflow_id).signal(signal, data)
    except RPCError as err:
        if err.status in TRANSIENT:
            raise Unavailable(f"Temporal is unavailable: {err.message}") from None


async def ended_status(client: Client, workflow_id: str) -> str:
    """How a workflow whose id cannot be started again ended, e.g. `completed`."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return "ended"
    return described.status.name.lower() if described.status else "ended"


@contextmanager
def reading(database_url: str) -> Iterator[Session]:
    """A session for the service's checks in the database; Unavailable when the database cannot
    be reached (nothing was changed, the same call may be made again)."""
    try:
        with shared_sessions(database_url)() as session:
            yield session
    except (OperationalError, InterfaceError):
        raise Unavailable("the database is unavailable: try again later") from None
