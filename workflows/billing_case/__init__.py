"""A billing case: its rules (rules.py, with the clocks in sla.py and clocks.py), what it shows
(views.py) and its Temporal shell (workflow.py)."""

from workflows.billing_case.workflow import BillingCaseWorkflow

__all__ = ["BillingCaseWorkflow"]
