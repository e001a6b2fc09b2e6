"""What the collections shell starts or signals elsewhere (Temporal calls, no rules): the case of a
dispute, the customer's account, a signal to either."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from core import search
    from core.contracts import SignalContract
    from core.ids import account_workflow_id, case_workflow_id
    from core.models import OpenCase, StartAccount
    from core.priority import PEOPLE
    from core.ui import case_details, case_summary
    from workflows.account import AccountWorkflow
    from workflows.billing_case import BillingCaseWorkflow
    from workflows.collections.rules import Collections


@dataclass(frozen=True)
class TellAccount:
    """Effect: a signal to the customer's account (started first if no invoice of theirs has)."""

    contract: SignalContract[Any]
    arg: Any


async def start_dispute_case(data: OpenCase) -> None:
    """The case that works a dispute: a child that outlives the invoice."""
    await workflow.start_child_workflow(
        BillingCaseWorkflow.run,
        data,
        id=case_workflow_id(data.case_id),
        task_queue=data.policy.task_queue,  # the cases' (None: this invoice's, as before)
        parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        priority=PEOPLE,  # a case people work on: not the invoice's bulk priority
        static_summary=case_summary(data),
        static_details=case_details(data),
        search_attributes=search.case_attributes(data.details),
    )


async def start_account(rules: Collections) -> str:
    """The customer's account, started unless another invoice of theirs did: its id."""
    tenant = rules.customer.tenant_id
    account_id = account_workflow_id(tenant)
    with suppress(WorkflowAlreadyStartedError):
        await workflow.start_child_workflow(
            AccountWorkflow.run,
            StartAccount(
                customer=rules.customer,
                policy=rules.policy,
                told_when_delivered=rules.case_policy.told_when_delivered,
            ),
            id=account_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"Account of tenant {tenant}",
            search_attributes=search.account_attributes(tenant_id=tenant),
        )
    return account_id
