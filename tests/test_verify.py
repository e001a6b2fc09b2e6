"""`verify`'s check of one row, against a stand-in for Temporal's answers (the whole command runs
on the real server in tests/test_faults.py and tests/test_chaos.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from service.verify import Difference, _check_row, _Row


@dataclass
class Described:
    status: WorkflowExecutionStatus


@dataclass
class Handle:
    refusal: RPCStatusCode

    async def describe(self) -> Described:
        return Described(WorkflowExecutionStatus.RUNNING)

    async def query(self, *args: Any, **kwargs: Any) -> Any:
        raise RPCError("no poller seen for task queue recently", self.refusal, b"")


@dataclass
class Temporal:
    refusal: RPCStatusCode

    def get_workflow_handle(self, workflow_id: str, **kwargs: Any) -> Handle:
        return Handle(self.refusal)


ROW = _Row("account", "account-3f2b8c1e", "open", 7)


async def test_a_running_workflow_no_worker_answers_for_is_a_difference() -> None:
    """An account runs for ever: with no worker polling, `verify` says so instead of failing."""
    found = await _check_row(cast(Client, Temporal(RPCStatusCode.FAILED_PRECONDITION)), ROW)
    assert found == [
        Difference("account", ROW.workflow_id, "no worker answered its query", "seq 7", "running")
    ]


async def test_another_refusal_still_fails_the_command() -> None:
    with pytest.raises(RPCError):
        await _check_row(cast(Client, Temporal(RPCStatusCode.UNAVAILABLE)), ROW)
