"""The error pages: not signed in (back to sign-in), not allowed, a form from elsewhere, and
the service's refusals with their status."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.errors import HTTP_STATUS, ServiceError
from web.auth import BadCsrf, Forbidden, NotSignedIn
from web.i18n import _
from web.workspace import workspace


async def not_signed_in(request: Request, _err: Exception) -> Response:
    if request.method != "GET":
        message = _("Please sign in again.")
        return workspace(request).pages.render(request, "error.html", None, 401, message=message)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


async def forbidden(request: Request, _err: Exception) -> Response:
    ws = workspace(request)
    message = _("Your role does not allow this. Nothing was changed.")
    return ws.pages.render(request, "error.html", await ws.signed_in(request), 403, message=message)


async def bad_csrf(request: Request, _err: Exception) -> Response:
    ws = workspace(request)
    message = _(
        "This form was not sent from this workspace session (its security token is missing "
        "or wrong). Nothing was changed: reload the page and try again."
    )
    return ws.pages.render(request, "error.html", await ws.signed_in(request), 403, message=message)


async def service_error(request: Request, err: Exception) -> Response:
    ws = workspace(request)
    code = next((c for kind, c in HTTP_STATUS.items() if isinstance(err, kind)), 500)
    person = await ws.signed_in(request)
    return ws.pages.render(request, "error.html", person, code, message=str(err))


async def no_such_page(request: Request, err: Exception) -> Response:
    """A path the workspace has no page for, or an HTTP error of Starlette's own, as a page in the
    person's language (not Starlette's English JSON)."""
    ws = workspace(request)
    code = err.status_code if isinstance(err, HTTPException) else 500
    message = (
        _("There is no such page in the workspace.") if code == 404 else _("The request failed.")
    )
    return ws.pages.render(
        request, "error.html", await ws.signed_in(request), code, message=message
    )


def add_error_pages(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, no_such_page)
    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(BadCsrf, bad_csrf)
    app.add_exception_handler(ServiceError, service_error)
