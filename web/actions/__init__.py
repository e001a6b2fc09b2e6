"""Every action the workspace offers, once: who may take it, its form, and the service call it
makes. A route serves all of a page's actions (`POST …/actions/{name}`) and the case, collections
and payables pages render each action's form from its fields, so a new action (a manager lifting
a fraud hold, approving a suspension) is one entry in its page's module (`cases.py`,
`invoices.py`, `payables.py`).

The actor of every action is the signed-in person (`by`, `recorded_by`), never a form field."""

from web.actions.base import (
    ADMINS,
    AGENTS,
    FINANCE,
    MANAGERS,
    Action,
    Field,
    Kind,
    china_end_of_day,
)
from web.actions.cases import CASE_ACTIONS
from web.actions.fapiao import FAPIAO_ACTIONS
from web.actions.finance import CREDIT_ACTIONS, REFUND_ACTIONS
from web.actions.invoices import COLLECTIONS_ACTIONS
from web.actions.payables import PAYABLES_ACTIONS

__all__ = [
    "ADMINS",
    "AGENTS",
    "CASE_ACTIONS",
    "COLLECTIONS_ACTIONS",
    "CREDIT_ACTIONS",
    "FAPIAO_ACTIONS",
    "FINANCE",
    "MANAGERS",
    "PAYABLES_ACTIONS",
    "REFUND_ACTIONS",
    "Action",
    "Field",
    "Kind",
    "china_end_of_day",
]
