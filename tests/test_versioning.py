"""Worker Versioning on the real dev server: a release made current moves what may move
(auto-upgrade runs, new runs) and leaves the pinned runs on the build they started on; the local
stack's take-over; the product's worker polling as its configured version; patches only in the
registry.

The upgrade is driven with small workflows defined here (one pinned, one auto-upgrade, as the
product's cases and accounts are): each step runs an activity that answers the build of the
worker that ran it, so the result is the list of builds the run went through.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker, WorkerDeploymentConfig
from temporalio.workflow import _Definition

from core import deployment
from core.ids import account_workflow_id, collections_workflow_id
from core.models import AccountOverrides, Assign, SetOverrides
from core.settings import Settings
from db.migrate import upgrade
from service import Service
from service.errors import NotFound
from tests.clock_support import eventually
from tests.test_billing_case_workflow import AGENT
from tests.test_collections_workflow import pay
from tests.workflow_support import billing_failure, open_case
from worker import WORKFLOWS, build_worker
from workflows import patches
from workflows.account import AccountWorkflow
from workflows.billing_case import BillingCaseWorkflow

ROOT = Path(__file__).resolve().parent.parent


def build_activity(build: str) -> Callable[[], Any]:
    @activity.defn(name="which_build")
    async def which_build() -> str:
        return build

    return which_build


class _Steps:
    """Two steps, the second once told to proceed; each step records the build that ran it."""

    def __init__(self) -> None:
        self._builds: list[str] = []
        self._go = False

    async def _step(self) -> None:
        build = await workflow.execute_activity(
            "which_build", result_type=str, start_to_close_timeout=timedelta(seconds=30)
        )
        self._builds.append(build)

    async def _two_steps(self) -> list[str]:
        await self._step()
        await workflow.wait_condition(lambda: self._go)
        await self._step()
        return self._builds

    @workflow.signal
    def proceed(self) -> None:
        self._go = True

    @workflow.query
    def builds(self) -> list[str]:
        return self._builds


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED, sandboxed=False)
class PinnedSteps(_Steps):
    """Like a case: runs to its end on the build it started on."""

    @workflow.run
    async def run(self) -> list[str]:
        return await self._two_steps()


@workflow.defn(versioning_behavior=VersioningBehavior.AUTO_UPGRADE, sandboxed=False)
class MovingSteps(_Steps):
    """Like an account: moves to the current build at its next workflow task."""

    @workflow.run
    async def run(self) -> list[str]:
        return await self._two_steps()


@workflow.defn(name="ReworkedSteps", versioning_behavior=VersioningBehavior.PINNED, sandboxed=False)
class ReworkedSteps(_Steps):
    @workflow.run
    async def run(self) -> list[str]:
        return await self._two_steps()


@workflow.defn(name="ReworkedSteps", versioning_behavior=VersioningBehavior.PINNED, sandboxed=False)
class ReworkedStepsV2(_Steps):
    """Build 2 of ReworkedSteps: a pause before the first step, so a build-1 history (whose first
    command is the activity) does not replay on it."""

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.sleep(timedelta(seconds=1))
        return await self._two_steps()


@asynccontextmanager
async def versioned_worker(
    client: Client,
    queue: str,
    version: WorkerDeploymentVersion,
    workflows: Sequence[type],
    sticky: bool = True,
) -> AsyncIterator[Worker]:
    config = WorkerDeploymentConfig(
        version=version,
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,  # as the product's worker
    )
    async with Worker(
        client,
        task_queue=queue,
        workflows=workflows,
        activities=[build_activity(version.build_id)],
        deployment_config=config,
        workflow_runner=UnsandboxedWorkflowRunner(),
        # without a cache the worker asks for no sticky queue: every task goes by the routing
        max_cached_workflows=100 if sticky else 0,
    ) as worker:
        yield worker


async def did_first_step(*handles: WorkflowHandle[Any, Any]) -> None:
    async def done() -> bool:
        return all([await h.query("builds") for h in handles])

    await eventually(done)


async def on_version(client: Client, version: WorkerDeploymentVersion, count: int) -> None:
    """Wait until visibility shows `count` open runs on `version`."""

    async def shown() -> bool:
        found = await client.count_workflows(deployment.open_query(version))
        return found.count == count

    await eventually(shown)


async def run_build(handle: WorkflowHandle[Any, Any]) -> str:
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id


async def failed_tasks(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events)


def fresh() -> tuple[str, str]:
    """A deployment and a task queue of the test's own: versions never mix across tests."""
    return f"test-{uuid.uuid4().hex[:10]}", f"versioning-{uuid.uuid4()}"


async def test_a_new_build_made_current_leaves_pinned_runs_and_moves_the_rest(
    dev_env: WorkflowEnvironment,
) -> None:
    client = dev_env.client
    name, queue = fresh()
    b1, b2 = WorkerDeploymentVersion(name, "b1"), WorkerDeploymentVersion(name, "b2")
    both = [PinnedSteps, MovingSteps]

    # build 1 keeps no runs cached: a run cached there gets its next task on build 1's sticky
    # queue when that task is dispatched before the change reached the queue (CI saw it once under
    # load); the move to the current build is the routing's, and that is what this test checks
    async with versioned_worker(client, queue, b1, both, sticky=False):
        await deployment.set_current(client, b1)
        # started by type name: mypy, given `PinnedSteps.run` (no argument), then misreads the
        # typed handles of other test modules
        case = await client.start_workflow("PinnedSteps", id=f"c-{uuid.uuid4()}", task_queue=queue)
        account = await client.start_workflow(
            "MovingSteps", id=f"a-{uuid.uuid4()}", task_queue=queue
        )
        await did_first_step(case, account)

        async with versioned_worker(client, queue, b2, both):
            await deployment.set_current(client, b2)
            info = await deployment.describe(client, name)
            assert deployment.current_build(info) == "b2"
            assert {s.deployment_version.build_id for s in info.version_summaries} == {"b1", "b2"}
            new = await client.start_workflow(
                "PinnedSteps", id=f"n-{uuid.uuid4()}", task_queue=queue
            )
            await did_first_step(new)  # the routing reached the queue: a new run went to build 2
            for handle in (case, account, new):
                await handle.signal("proceed")
            assert await case.result() == ["b1", "b1"]  # pinned: finished where it started
            assert await account.result() == ["b1", "b2"]  # auto-upgrade: moved over
            assert await new.result() == ["b2", "b2"]  # new runs start on the current build
            assert [await run_build(h) for h in (case, account, new)] == ["b1", "b2", "b2"]
            await on_version(client, b1, 0)  # build 1 is drained: nothing open runs on it

    for handle in (case, account, new):
        assert await failed_tasks(handle) == 0


async def test_the_local_stack_takes_over_the_runs_that_replay_and_names_the_others(
    dev_env: WorkflowEnvironment,
) -> None:
    """`make run` after a `git pull` (WORKER_TAKE_OVER): the new build becomes current; a pinned run
    of the old build whose history replays on the new code moves to it; one that does not stays
    on its build, and the advice names it with the query that ends it."""
    client = dev_env.client
    name, queue = fresh()
    b1, b2 = WorkerDeploymentVersion(name, "b1"), WorkerDeploymentVersion(name, "b2")

    async with versioned_worker(client, queue, b1, [PinnedSteps, ReworkedSteps]):
        await deployment.set_current(client, b1)
        same = await client.start_workflow("PinnedSteps", id=f"s-{uuid.uuid4()}", task_queue=queue)
        changed = await client.start_workflow(
            "ReworkedSteps", id=f"r-{uuid.uuid4()}", task_queue=queue
        )
        await did_first_step(same, changed)
        await on_version(client, b1, 2)
    # the old worker is gone, as after a `git pull`: the new build comes up and takes over
    build_2 = [PinnedSteps, ReworkedStepsV2]
    async with versioned_worker(client, queue, b2, build_2):
        replayer = Replayer(workflows=build_2, data_converter=client.data_converter)
        done = await deployment.take_over(client, b2, replayer)
        assert done.moved == [same.id]
        assert done.left == {"b1": [changed.id]}
        await same.signal("proceed")
        assert await same.result() == ["b1", "b2"]
        assert await failed_tasks(same) == 0
        assert await run_build(changed) == "b1"
        [advice] = deployment.stranded_advice(name, done.left)
        assert changed.id in advice and deployment.open_query(b1) in advice
        # again (the next start): nothing more to move, the same run named
        again = await deployment.take_over(client, b2, replayer)
        assert again.moved == [] and again.left == done.left
    await changed.terminate("test over")


async def test_the_worker_polls_as_its_configured_version(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    name, queue = fresh()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        task_queue=queue,
        worker_versioning=True,
        worker_deployment_name=name,
    )
    upgrade(settings.database_url)
    version = deployment.deployment_version(settings)
    assert version == WorkerDeploymentVersion(name, deployment.code_build_id())
    async with build_worker(dev_env.client, settings):
        await deployment.set_current(dev_env.client, version)
        info = await deployment.describe(dev_env.client, name)
    [summary] = info.version_summaries
    assert summary.deployment_version.build_id == version.build_id
    assert deployment.current_build(info) == version.build_id


async def test_a_release_of_the_product_leaves_cases_and_invoices_and_moves_accounts(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The product's own worker, released twice from the same code as builds b1 and b2: a case
    and an invoice started on b1 stay there (pinned), the customer's account moves to b2 at its
    next task, a case opened after the release starts on b2, and no workflow task fails."""
    client = dev_env.client
    name, queue = fresh()
    database = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(database)
    one, two = (
        Settings(
            database_url=database,
            outbox_dir=tmp_path / "outbox",
            task_queue=queue,
            worker_versioning=True,
            worker_deployment_name=name,
            worker_build_id=build,
        )
        for build in ("b1", "b2")
    )
    service = Service(client, one)
    failure = billing_failure()
    async with build_worker(client, one):
        await deployment.set_current(client, deployment.deployment_version(one))
        case = client.get_workflow_handle((await service.cases.open(open_case())).workflow_id)
        await service.collections.report_failure(failure)
        invoice = client.get_workflow_handle(collections_workflow_id(failure.invoice_id))
        account = client.get_workflow_handle(account_workflow_id(failure.customer.tenant_id))

        async def account_started() -> bool:
            try:
                return bool((await service.accounts.show(failure.customer.tenant_id)).timeline)
            except NotFound:  # the day-0 notice starts it, once the invoice's first task ran
                return False

        await eventually(account_started)
        assert [await run_build(h) for h in (case, invoice, account)] == ["b1"] * 3

        async with build_worker(client, two):
            await deployment.set_current(client, deployment.deployment_version(two))
            await case.execute_update(
                BillingCaseWorkflow.assign, Assign(agent="agent.li@partner.example.cn", by=AGENT)
            )
            await service.collections.act(failure.invoice_id, pay(failure, "5000.00", "P-1"))
            # the account's next task (a manager's override) runs on the current build
            await service.accounts.set_overrides(
                failure.customer.tenant_id,
                SetOverrides(
                    overrides=AccountOverrides(extra_grace_days=3), reason="on leave", by=AGENT
                ),
            )

            async def account_moved() -> bool:
                return await run_build(account) == "b2"

            await eventually(account_moved)
            later = client.get_workflow_handle((await service.cases.open(open_case())).workflow_id)

            async def later_on_b2() -> bool:  # once its first task ran
                return await run_build(later) == "b2"

            await eventually(later_on_b2)
            assert [await run_build(h) for h in (case, invoice)] == ["b1", "b1"]
            assert (await service.cases.show(case.id.removeprefix("case-"))).owner
    for handle in (case, invoice, account, later):
        assert await failed_tasks(handle) == 0


def test_the_build_id_follows_the_workflow_code(tmp_path: Path) -> None:
    """The same sources give the same build id on every machine; a change to a workflow or to the
    core it imports is a new build; anything else (activities, templates) is not."""
    for folder in ("workflows", "core", "activities"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "rules.py").write_text("A = 1\n")
    first = deployment.code_build_id(tmp_path)
    assert first == deployment.code_build_id(tmp_path) and first.startswith("code-")
    (tmp_path / "activities" / "rules.py").write_text("A = 2\n")
    assert deployment.code_build_id(tmp_path) == first
    (tmp_path / "core" / "rules.py").write_text("A = 2\n")
    assert deployment.code_build_id(tmp_path) != first
    assert deployment.code_build_id() == deployment.code_build_id(ROOT)


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("worker_deployment_name", "billing.support", "no '.' or ':'"),
        ("worker_deployment_name", "billing:support", "no '.' or ':'"),
        ("worker_deployment_name", "", "1 to 255 characters"),
        ("worker_build_id", "x" * 256, "1 to 255 characters"),
        ("worker_build_id", "release 1", "printable ASCII without spaces"),
        ("worker_take_over", True, "WORKER_TAKE_OVER needs WORKER_VERSIONING=true"),
    ],
)
def test_versioning_settings_are_checked(setting: str, value: object, error: str) -> None:
    extra = {"worker_versioning": False} if setting == "worker_take_over" else {}
    with pytest.raises(ValidationError, match=error):
        Settings(**{setting: value}, **extra)  # type: ignore[arg-type]


def test_the_worker_runs_pinned_unless_a_workflow_says_otherwise() -> None:
    config = deployment.deployment_config(Settings(worker_versioning=True, worker_build_id="b7"))
    assert config is not None and config.use_worker_versioning
    assert config.default_versioning_behavior is VersioningBehavior.PINNED
    assert config.version == WorkerDeploymentVersion("billing-support", "b7")
    assert deployment.deployment_config(Settings(worker_versioning=False)) is None


def behavior(cls: type) -> VersioningBehavior:
    declared = _Definition.must_from_class(cls).versioning_behavior
    return declared or VersioningBehavior.UNSPECIFIED


@pytest.mark.parametrize(
    "cls", [cls for cls in WORKFLOWS if cls is not AccountWorkflow], ids=lambda c: c.__name__
)
def test_cases_collections_and_invoices_are_pinned(cls: type) -> None:
    # unspecified: the worker's default, pinned
    assert behavior(cls) in (VersioningBehavior.PINNED, VersioningBehavior.UNSPECIFIED)


def test_accounts_move_to_the_current_build() -> None:
    assert behavior(AccountWorkflow) is VersioningBehavior.AUTO_UPGRADE


def test_base_and_sealed_ask_no_patch() -> None:
    for module in ("base.py", "sealed.py"):
        text = (ROOT / "workflows" / module).read_text()
        assert "patched(" not in text and "deprecate_patch(" not in text, module


def test_patches_are_asked_only_through_the_registry() -> None:
    found = subprocess.run(
        ["grep", "-rn", "--include=*.py", "patched(", "workflows/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert [line for line in found if not line.startswith("workflows/patches.py:")] == []


def test_the_registry_refuses_a_patch_it_does_not_list() -> None:
    stray = patches.Patch(id="stray", added=date(2027, 1, 1), why="-", removable_when="-")
    with pytest.raises(ValueError, match="not in the registry"):
        patches.applies(stray)
    assert all(p.removable_when and p.why for p in patches.PATCHES)
    assert len({p.id for p in patches.PATCHES}) == len(patches.PATCHES)
