"""The workspace's routes, one router per area; `create_app` includes them in this order."""

from web.routes import (
    attachments,
    attention,
    cases,
    customers,
    fapiao,
    finance,
    inbox,
    invoices,
    macros,
    new_case,
    payables,
    people,
    queues,
    replies,
    report,
    sign_in,
    statements,
)
from web.routes.errors import add_error_pages

# new_case before cases: /cases/new is not the page of a case called "new"
ROUTERS = [
    sign_in.router,
    queues.router,
    new_case.router,
    cases.router,
    replies.router,
    macros.router,
    attachments.router,
    invoices.router,
    payables.router,
    fapiao.router,
    finance.router,
    people.router,
    inbox.router,
    customers.router,
    statements.router,
    attention.router,
    report.router,
]

__all__ = ["ROUTERS", "add_error_pages"]
