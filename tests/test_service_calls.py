"""How the service names a failed call (service/calls.py), against the real dev server."""

from __future__ import annotations

import uuid

import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from service.calls import Named, explain
from service.errors import NotFound


async def test_a_workflow_started_after_the_call_missed_it_was_not_found(
    dev_env: WorkflowEnvironment,
) -> None:
    """A customer's account is started by its first invoice: a page that asks for it just before
    finds none, even if it runs by the time the failure is explained (it answered 409 before)."""
    client = dev_env.client
    workflow_id = f"account-{uuid.uuid4()}"
    named = Named(workflow_id, "the account", "nothing of this customer was ever held")
    with pytest.raises(RPCError) as missed:
        await client.get_workflow_handle(workflow_id).describe()
    assert missed.value.status is RPCStatusCode.NOT_FOUND
    assert isinstance(await explain(client, named, missed.value), NotFound)

    handle = await client.start_workflow("NoSuchWorkflow", id=workflow_id, task_queue="nobody")
    try:
        explained = await explain(client, named, missed.value)
        assert isinstance(explained, NotFound) and "yet" in str(explained)
    finally:
        await handle.terminate()
