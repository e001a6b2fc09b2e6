"""A customer's page (per tenant), for signed-in staff: its cases with their status, its invoices
in collections (stage, balance), its account's holds and overrides, and the latest emails, our
letters to it and its own, each linking to its page. The database projection only: no Temporal
round trip but the account's own query (what it waits for a person to do)."""

from __future__ import annotations

from contextlib import suppress

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from core.models import EmailTemplate
from service.errors import ServiceError
from service.inbox import Letter
from service.workspace import ThreadEmail
from web.i18n import _
from web.routes.inbox import OUTCOMES
from web.workspace import WorkspaceDep

router = APIRouter()
UNKNOWN = _("The product knows no customer with this tenant id.")
EMAILS = 30  # of each side, the latest


def to_customer(email: ThreadEmail) -> bool:
    """Whether it is one of our letters to the customer (not a notification to our staff)."""
    try:
        return EmailTemplate(email.template).to_customer
    except ValueError:  # a template of an older version: shown
        return True


@router.get("/customers/{tenant_id}")
async def customer_page(request: Request, tenant_id: str, ws: WorkspaceDep) -> Response:
    person = await ws.me(request)
    service = await ws.connection.get()
    overview = await service.customers.overview(tenant_id)
    if overview is None:
        return ws.pages.render(request, "error.html", person, 404, message=UNKNOWN)
    ours = [
        email
        for email in await service.workspace.latest_emails(overview.subject_ids, EMAILS)
        if to_customer(email)
    ]
    theirs = await service.inbox.of_workflows(overview.workflow_ids, EMAILS)
    account = None
    if overview.overrides is not None:  # what its account waits for a person to do, if anything
        with suppress(ServiceError):
            account = await service.accounts.show(tenant_id)
    emails: list[ThreadEmail | Letter] = sorted(
        [*ours, *theirs], key=lambda email: email.at, reverse=True
    )
    return ws.pages.render(
        request,
        "customer.html",
        person,
        overview=overview,
        emails=emails,
        outcomes=OUTCOMES,
        account=account,
    )
