"""Worker Versioning: which version a worker polls as, and the deployment calls around a release
(docs/production.md, "Deploying a release").

A version is a deployment name and a build id. Cases, collections and 21Vianet invoices are
pinned: each runs to its end on the build it started on. Accounts auto-upgrade: they move to the
current version at their next workflow task. No code here runs inside a workflow.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import temporalio
from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.deployment.v1 import WorkerDeploymentInfo
from temporalio.api.deployment.v1 import WorkerDeploymentVersion as VersionProto
from temporalio.api.enums.v1 import RoutingConfigUpdateState
from temporalio.api.workflow.v1 import VersioningOverride, WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    UpdateWorkflowExecutionOptionsRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer, WorkerDeploymentConfig

from core.settings import ROOT, Settings

# Everything a workflow's commands can depend on: its own code and the core it imports (the
# architecture test keeps workflows/ on core/ alone). Activities, templates, the API and the
# workspace are not replayed: changing them alone keeps the build, and its workers roll in place.
WORKFLOW_CODE = ("workflows", "core")
# how long a new worker's version may take to reach the server before it can be made current
REGISTER_WITHIN = 60.0
T = TypeVar("T")


def code_build_id(root: Path = ROOT) -> str:
    """`code-<12 hex>`: a digest of the workflow code and the SDK version (an SDK upgrade may
    change the commands it issues). The same on every machine with the same sources, so each
    worker of a release computes the same build id without being told."""
    digest = hashlib.sha256(f"temporalio {temporalio.__version__}\n".encode())
    for folder in WORKFLOW_CODE:
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(f"{path.relative_to(root).as_posix()}\n".encode())
            digest.update(path.read_bytes())
    return f"code-{digest.hexdigest()[:12]}"


def deployment_version(settings: Settings) -> WorkerDeploymentVersion:
    """The version this worker polls as: WORKER_BUILD_ID, or the code's digest."""
    build_id = settings.worker_build_id or code_build_id()
    return WorkerDeploymentVersion(settings.worker_deployment_name, build_id)


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The worker's versioning: pinned unless a workflow type says otherwise (accounts)."""
    if not settings.worker_versioning:
        return None
    return WorkerDeploymentConfig(
        version=deployment_version(settings),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


def search_value(version: WorkerDeploymentVersion) -> str:
    """How visibility's `TemporalWorkerDeploymentVersion` spells a version."""
    return f"{version.deployment_name}:{version.build_id}"


def open_query(version: WorkerDeploymentVersion, behavior: str | None = None) -> str:
    """The visibility query for the open workflows on `version` (`Pinned`, `AutoUpgrade`)."""
    query = (
        f"TemporalWorkerDeploymentVersion = '{search_value(version)}' "
        "AND ExecutionStatus = 'Running'"
    )
    return f"{query} AND TemporalWorkflowVersioningBehavior = '{behavior}'" if behavior else query


# the server answers a burst of calls about one deployment (workers of a release starting together)
# with RESOURCE_EXHAUSTED: asked again after a pause, within this long
BUSY = (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE)
PATIENCE = 60.0


async def patiently(call: Callable[[], Awaitable[T]], within: float = PATIENCE) -> T:
    """A deployment call, asked again while the server says it is busy."""
    deadline, pause = time.monotonic() + within, 0.2
    while True:
        try:
            return await call()
        except RPCError as err:
            if err.status not in BUSY or time.monotonic() > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


async def describe(client: Client, deployment_name: str) -> WorkerDeploymentInfo:
    request = DescribeWorkerDeploymentRequest(
        namespace=client.namespace, deployment_name=deployment_name
    )
    answer = await patiently(lambda: client.workflow_service.describe_worker_deployment(request))
    return answer.worker_deployment_info


def current_build(info: WorkerDeploymentInfo) -> str | None:
    current = info.routing_config.current_deployment_version
    return current.build_id or None


async def set_current(
    client: Client, version: WorkerDeploymentVersion, within: float = REGISTER_WITHIN
) -> None:
    """Make `version` current: new workflows start on it, auto-upgrade ones move to it. A
    version exists once one of its workers has polled: until then (`within` seconds) ask again.
    Returns once the server says the routing reached every partition of the task queues: before
    that, a task of an auto-upgrade run may still go to the old build."""
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace,
        deployment_name=version.deployment_name,
        build_id=version.build_id,
        identity="billing-support worker",
    )
    deadline = time.monotonic() + within
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(request)
            break
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    await propagated(client, version.deployment_name, deadline)


async def propagated(client: Client, deployment_name: str, deadline: float) -> None:
    """Wait while the deployment's routing change is still reaching its task queues (servers
    that do not report it answer UNSPECIFIED: nothing to wait for)."""
    while True:
        info = await describe(client, deployment_name)
        state = info.routing_config_update_state
        if state != RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_IN_PROGRESS:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the routing of {deployment_name} did not reach its task queues")
        await asyncio.sleep(0.2)


async def pin(
    client: Client, workflow_id: str, run_id: str, version: WorkerDeploymentVersion
) -> None:
    """Pin one open run to `version` (`temporal workflow update-options
    --versioning-override-behavior pinned --versioning-override-deployment-name …
    --versioning-override-build-id …`)."""
    override = VersioningOverride(
        pinned=VersioningOverride.PinnedOverride(
            version=VersionProto(
                deployment_name=version.deployment_name, build_id=version.build_id
            ),
            behavior=VersioningOverride.PinnedOverrideBehavior.PINNED_OVERRIDE_BEHAVIOR_PINNED,
        )
    )
    request = UpdateWorkflowExecutionOptionsRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
        workflow_execution_options=WorkflowExecutionOptions(versioning_override=override),
        update_mask=FieldMask(paths=["versioning_override"]),
    )
    await patiently(lambda: client.workflow_service.update_workflow_execution_options(request))


@dataclass
class TakeOver:
    """What `take_over` did: the pinned runs it moved, and those whose history does not replay
    on the new code (they stay on their build: run it, or end them)."""

    moved: list[str] = field(default_factory=list)
    left: dict[str, list[str]] = field(default_factory=dict)  # build id -> workflow ids


async def take_over(
    client: Client, version: WorkerDeploymentVersion, replayer: Replayer
) -> TakeOver:
    """For a stack with one worker (`make run`): make `version` current, then move each open
    pinned run of an older build of the deployment to it, if its history replays on `replayer`'s
    workflows (this code). Replaying is the proof Temporal's own replay tests give: the new code
    issues the commands the old one did, so the run goes on as if it had started here."""
    await set_current(client, version)
    done = TakeOver()
    info = await describe(client, version.deployment_name)
    for summary in info.version_summaries:
        build = summary.deployment_version.build_id
        if build == version.build_id:
            continue
        older = WorkerDeploymentVersion(version.deployment_name, build)
        async for execution in client.list_workflows(open_query(older, "Pinned")):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            history = await handle.fetch_history()
            result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            if result.replay_failure is None:
                await pin(client, execution.id, execution.run_id, version)
                done.moved.append(execution.id)
            else:
                done.left.setdefault(build, []).append(execution.id)
    return done


def stranded_advice(deployment_name: str, left: dict[str, list[str]]) -> Sequence[str]:
    """What to do about the runs `take_over` left, one line each build."""
    return [
        f"{len(ids)} open pinned workflow(s) of build {build} do not replay on this code "
        f"({', '.join(ids[:3])}{', …' if len(ids) > 3 else ''}): run that build's code to let them "
        f"finish, or end them: temporal workflow terminate --yes --reason 'dev reset' --query "
        f'"{open_query(WorkerDeploymentVersion(deployment_name, build))}"'
        for build, ids in left.items()
    ]
