"""Which work goes first when the task queue has a backlog (Temporal's task queue priority: the
matching service hands out a lower key first; 3 when none is given).

A billing run or a bank statement starts thousands of invoices and their accounts at once; an
agent's note on a case must not wait behind them. A workflow's priority is given when it starts,
and its workflow tasks (every signal and update a person sends it) and activities inherit it."""

from __future__ import annotations

from temporalio.common import Priority

# cases: what people work on (opened by an agent, by a customer's email, or for a dispute)
PEOPLE = Priority(priority_key=2)
# invoices in collections and the customers' accounts: started in bulk by the billing runs
BULK = Priority(priority_key=4)
