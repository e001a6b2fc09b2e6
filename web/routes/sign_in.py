"""Signing in and out: a local account (throttled after failures) or Entra ID operated by
21Vianet (OIDC); the person's language; the health check."""

from __future__ import annotations

import logging
import math
import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from core.models import Locale
from core.settings import Settings
from service.errors import NotFound, Throttled
from service.users import Person, roles_from_groups
from web.auth import now, sign_in, sign_out
from web.i18n import _, best_locale
from web.pages import choice
from web.workspace import WorkspaceDep

log = logging.getLogger("web")
router = APIRouter()
SAFE_PATH = re.compile(r"/[A-Za-z0-9/_.~%?=&+-]*")
NO_OIDC = "sign-in with Entra ID is not configured (OIDC_AUTHORITY)"


def safe_next(target: str) -> str:
    """Only a path of this site: a sign-in link must not send anyone elsewhere (no `//host`, and
    no tab, newline or backslash a browser would drop or turn into one)."""
    if not SAFE_PATH.fullmatch(target) or target.startswith("//"):
        return "/"
    return target


def oidc_client(settings: Settings) -> Any:
    """Authlib's OIDC client for the partner's Entra ID, or None when it is not configured."""
    if not settings.oidc_authority:
        return None
    from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    secret = settings.oidc_client_secret
    oauth.register(
        "entra",
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        server_metadata_url=settings.oidc_authority.rstrip("/")
        + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile email"},
    )
    return oauth.create_client("entra")


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/login")
async def login_page(request: Request, ws: WorkspaceDep, next: str = "/") -> Response:
    return ws.pages.render(
        request, "login.html", None, next=safe_next(next), oidc=ws.oidc is not None
    )


@router.post("/login")
async def login(request: Request, ws: WorkspaceDep) -> Response:
    form = await ws.checked_form(request)
    email = str(form.get("email", ""))
    target = safe_next(str(form.get("next", "/")))
    again = dict(next=target, oidc=ws.oidc is not None, email=email)
    address = request.client.host if request.client else "unknown"
    try:
        person = await ws.users.sign_in(
            email, str(form.get("password", "")), address=address, now=now()
        )
    except Throttled as err:
        minutes = timedelta(minutes=math.ceil(err.retry_after / 60))
        answer = ws.pages.render(request, "login.html", None, 429, wait=minutes, **again)
        answer.headers["retry-after"] = str(err.retry_after)
        return answer
    if person is None:
        error = _("Wrong email or password.")
        return ws.pages.render(request, "login.html", None, 401, error=error, **again)
    await sign_in(request, ws.sessions, person, local=True)
    return RedirectResponse(target, status_code=303)


@router.get("/login/oidc")
async def login_oidc(request: Request, ws: WorkspaceDep, next: str = "/") -> Response:
    if ws.oidc is None:
        raise NotFound(NO_OIDC)
    request.session["next"] = safe_next(next)
    redirect: Response = await ws.oidc.authorize_redirect(
        request, str(request.url_for("oidc_callback"))
    )
    return redirect


@router.get("/auth/callback", name="oidc_callback")
async def oidc_callback(request: Request, ws: WorkspaceDep) -> Response:
    if ws.oidc is None:
        raise NotFound(NO_OIDC)
    from authlib.integrations.starlette_client import OAuthError

    target = safe_next(str(request.session.get("next", "/")))
    try:
        token = await ws.oidc.authorize_access_token(request)
    except OAuthError as err:
        log.warning("OIDC sign-in refused: %s", err.error)
        return ws.pages.render(
            request,
            "login.html",
            None,
            401,
            next=target,
            oidc=True,
            error=_("Sign-in with Entra ID failed."),
        )
    claims = token.get("userinfo") or {}
    email = str(claims.get("email") or claims.get("preferred_username") or claims.get("sub"))
    groups = [str(group) for group in claims.get("groups", []) if isinstance(group, str)]
    person = Person(
        email=email.lower(),
        name=str(claims.get("name") or email),
        roles=roles_from_groups(groups, ws.settings),
        locale=best_locale(request.headers.get("accept-language")),
    )
    await sign_in(request, ws.sessions, person, local=False)
    log.info("signed in with Entra ID: %s, roles %s", person.email, sorted(person.roles))
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
async def logout(request: Request, ws: WorkspaceDep) -> Response:
    await ws.checked_form(request)
    await sign_out(request, ws.sessions)
    return RedirectResponse("/login", status_code=303)


@router.post("/locale")
async def set_locale(request: Request, ws: WorkspaceDep) -> Response:
    form = await ws.checked_form(request)
    chosen = choice(Locale, str(form.get("locale", "")))
    if chosen is not None:
        request.session["locale"] = chosen.value
    return RedirectResponse(safe_next(str(form.get("next", "/"))), status_code=303)
