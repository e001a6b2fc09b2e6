"""The workspace's routes, one router per area; `create_app` includes them in this order."""

from web.routes import cases, invoices, payables, queues, sign_in
from web.routes.errors import add_error_pages

ROUTERS = [sign_in.router, queues.router, cases.router, invoices.router, payables.router]

__all__ = ["ROUTERS", "add_error_pages"]
