"""The agents' workspace: server-rendered pages over the service layer (`service`).

Sign-in with Entra ID operated by 21Vianet (OIDC) or a local account, throttled after failures;
the session is kept in the database, its token in a signed, HttpOnly, SameSite, Secure cookie,
with an idle timeout and a maximum lifetime; every form carries the session's CSRF token; every
action is the signed-in person's, allowed by their roles (`web/actions/`), and a refusal is shown
inline beside the form that was sent. The queues and lists read the database projection; a case or
an invoice page asks its workflow (the SLA clocks, what it waits for). The routes are in
`web/routes/`, one router per area; this module wires them.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings, required_secret
from core.temporal import data_converter
from service import Service, ServiceConnection, ServiceFactory
from service.sessions import Sessions
from service.users import Users
from web.auth import SESSION_COOKIE
from web.pages import HERE, Pages
from web.routes import ROUTERS, add_error_pages
from web.routes.sign_in import oidc_client
from web.workspace import Workspace

SECURITY_HEADERS = [
    # no inline script or style: markup a customer wrote can run nothing, even if it got through
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
# behind HTTPS (WEB_SECURE_COOKIES): browsers keep to HTTPS for a year, never plain http
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers", [])
                named = {name.lower() for name, _ in own}  # a route's own (a file's CSP) stays
                message["headers"] = [*own, *(h for h in self.headers if h[0] not in named)]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Settings, service_factory: ServiceFactory | None = None) -> FastAPI:
    """The workspace; raises SettingsError when it cannot run safely (no session secret, no
    payload encryption key)."""
    secret = required_secret(
        settings.web_session_secret,
        "WEB_SESSION_SECRET",
        "it signs the workspace's session cookies",
        32,
    )
    settings.case_policy(), settings.collections_policy()  # a broken policy file stops the start
    if service_factory is None:
        data_converter(settings)  # no encryption key, no start
    app = FastAPI(
        title="Billing support workspace", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.workspace = Workspace(
        settings=settings,
        pages=Pages(),
        connection=ServiceConnection(service_factory or (lambda: Service.connect(settings))),
        users=Users(settings),
        sessions=Sessions(settings),
        oidc=oidc_client(settings),
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.web_session_max_hours * 3600,  # the server ends a session sooner
        same_site="lax",  # "strict" would drop the session on the way back from Entra ID
        https_only=settings.web_secure_cookies,
    )
    secure = settings.web_secure_cookies
    app.add_middleware(SecurityHeaders, headers=[*SECURITY_HEADERS, *([HSTS] if secure else [])])
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    add_error_pages(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
