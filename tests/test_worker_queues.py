"""Cases on a task queue of their own (core/settings.py `cases_task_queue`), and worker processes
that poll one queue or both (WORKER_QUEUES): on the real dev server with the real worker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from core.ids import case_workflow_id, collections_workflow_id
from core.settings import Settings
from db.migrate import upgrade
from service import Service
from tests.clock_support import eventually
from tests.workflow_support import billing_failure, open_case
from worker import build_worker


def test_each_choice_polls_its_queues() -> None:
    settings = Settings(task_queue="billing")
    assert settings.task_queues() == ("billing", "billing-cases")
    assert settings.polled_task_queues() == ("billing", "billing-cases")
    assert Settings(task_queue="billing", worker_queues="cases").polled_task_queues() == (
        "billing-cases",
    )
    assert Settings(task_queue="billing", worker_queues="invoices").polled_task_queues() == (
        "billing",
    )
    # a case's policy carries the queue, so an invoice's dispute opens its case there
    assert settings.case_policy().task_queue == "billing-cases"


def test_an_unknown_choice_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="worker_queues"):
        Settings(worker_queues="everything")


async def test_a_cases_worker_runs_the_cases_and_leaves_the_invoices(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """With only the cases' worker running, a case is acknowledged and an invoice waits for its
    own worker; once that one runs, the invoice goes on."""
    base = Settings(
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        task_queue=f"queues-{uuid.uuid4()}",
    )
    upgrade(base.database_url)
    cases_only = base.model_copy(update={"worker_queues": "cases"})
    invoices_only = base.model_copy(update={"worker_queues": "invoices"})
    service = Service(dev_env.client, base)
    data = open_case()
    failure = billing_failure()
    async with build_worker(dev_env.client, cases_only):
        await service.cases.open(data)
        assert await service.collections.report_failure(failure) == "started"
        case = dev_env.client.get_workflow_handle(case_workflow_id(data.case_id))
        invoice = dev_env.client.get_workflow_handle(collections_workflow_id(failure.invoice_id))

        async def acknowledged() -> bool:
            return any("case_acknowledged" in p.name for p in base.outbox_dir.glob("*.eml"))

        await eventually(acknowledged, "the case's acknowledgement")
        # nobody polls the invoices' queue: its first workflow task is still to be taken
        waiting = (await invoice.describe()).raw_description
        assert waiting.workflow_execution_info.history_length <= 3
        assert waiting.pending_workflow_task.scheduled_time.seconds > 0
    async with build_worker(dev_env.client, invoices_only):

        async def going() -> bool:
            info = (await invoice.describe()).raw_description.workflow_execution_info
            return info.history_length > 3

        await eventually(going, "the invoice's first steps, once its worker runs")
    assert (await case.describe()).status is WorkflowExecutionStatus.RUNNING
