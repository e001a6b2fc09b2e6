"""A customer's account: its rules (`rules.py`, with the pure helpers beside it) and its Temporal
shell (`workflow.py`)."""

from workflows.account.workflow import AccountWorkflow

__all__ = ["AccountWorkflow"]
