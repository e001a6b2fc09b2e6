"""The partner's payable to 21Vianet: its rules (rules.py) and its Temporal shell (workflow.py)."""

from workflows.vianet_invoice.workflow import VianetInvoiceWorkflow

__all__ = ["VianetInvoiceWorkflow"]
