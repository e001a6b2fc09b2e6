"""One unpaid invoice in collections: its rules (rules.py, with the policy clock and the
suspension gate beside them) and its Temporal shell (workflow.py)."""

from workflows.collections.workflow import CollectionsWorkflow

__all__ = ["CollectionsWorkflow"]
