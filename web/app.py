"""The agents' workspace: server-rendered pages over the service layer (`service`).

Sign-in with Entra ID operated by 21Vianet (OIDC) or a local account, throttled after failures;
the session is kept in the database, its token in a signed, HttpOnly, SameSite, Secure cookie,
with an idle timeout and a maximum lifetime; every form carries the session's CSRF token; every
action is the signed-in person's, allowed by their roles (`web/actions.py`), and a refusal is shown
inline beside the form that was sent. The queues and lists read the database projection; a case or
an invoice page asks its workflow (the SLA clocks, what it waits for).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.formatting import day, duration, money, when
from core.models import Category, Locale, Priority
from core.settings import Settings, required_secret
from core.temporal import data_converter
from service import Service, ServiceConnection, ServiceFactory
from service.errors import (
    HTTP_STATUS,
    AlreadyExists,
    NotFound,
    Refused,
    ServiceError,
    Throttled,
)
from service.sessions import Sessions
from service.users import Person, Role, Users, roles_from_groups
from service.workspace import CaseFilter, Queue
from web import actions as registry
from web.actions import Action
from web.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    BadCsrf,
    Forbidden,
    NotSignedIn,
    check_csrf,
    csrf_token,
    now,
    person_of,
    require,
    sign_in,
    sign_out,
)
from web.i18n import _, best_locale, translations

log = logging.getLogger("web")
HERE = Path(__file__).resolve().parent
SAFE_PATH = re.compile(r"/[A-Za-z0-9/_.~%?=&+-]*")
QUEUE_LABELS = {
    Queue.MINE: _("Mine"),
    Queue.UNASSIGNED: _("Unassigned"),
    Queue.SLA: _("SLA at risk or breached"),
    Queue.WAITING_ON_CUSTOMER: _("Waiting on the customer"),
    Queue.WAITING_ON_VIANET: _("Waiting on 21Vianet"),
    Queue.NEEDS_ATTENTION: _("Needs attention"),
}
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
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)


def _problems(err: ValidationError) -> str:
    """What a form got wrong, naming each field as the CLI and the API do."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'input'}: "
        + e["msg"].removeprefix("Value error, ")
        for e in err.errors()
    )


def _page_number(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _choice(kind: Any, value: str | None) -> Any:
    try:
        return kind(value) if value else None
    except ValueError:
        return None


class Pages:
    """The templates, rendered in the person's language."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            extensions=["jinja2.ext.i18n"],
            auto_reload=False,
        )
        self.env.globals.update(
            money=money,
            csrf_field=CSRF_FIELD,
            queues=QUEUE_LABELS,
            agents=registry.AGENTS,
        )

    def render(
        self,
        request: Request,
        name: str,
        person: Person | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        locale = Locale(
            request.session.get("locale") or best_locale(request.headers.get("accept-language"))
        )
        words = translations(locale)
        html = self.env.get_template(name).render(
            request=request,
            person=person,
            locale=locale.value,
            csrf=csrf_token(request),
            _=words.gettext,
            gettext=words.gettext,
            ngettext=words.ngettext,
            when=lambda value: when(value, locale.value) if value else "",
            day=lambda value: day(value, locale.value) if value else "",
            duration=lambda value: duration(value, locale.value),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)


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
    connection = ServiceConnection(service_factory or (lambda: Service.connect(settings)))
    pages = Pages()
    users, sessions = Users(settings), Sessions(settings)
    app = FastAPI(
        title="Billing support workspace", docs_url=None, redoc_url=None, openapi_url=None
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
    oidc = _oidc_client(settings)

    # ----------------------------------------------------------------- errors

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _err: Exception) -> Response:
        if request.method != "GET":
            return pages.render(
                request, "error.html", None, 401, message=_("Please sign in again.")
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, _err: Exception) -> Response:
        message = _("Your role does not allow this. Nothing was changed.")
        return pages.render(request, "error.html", await _signed_in(request), 403, message=message)

    @app.exception_handler(BadCsrf)
    async def bad_csrf(request: Request, _err: Exception) -> Response:
        message = _(
            "This form was not sent from this workspace session (its security token is missing "
            "or wrong). Nothing was changed: reload the page and try again."
        )
        return pages.render(request, "error.html", await _signed_in(request), 403, message=message)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: Exception) -> Response:
        code = next((c for kind, c in HTTP_STATUS.items() if isinstance(err, kind)), 500)
        person = await _signed_in(request)
        return pages.render(request, "error.html", person, code, message=str(err))

    async def _signed_in(request: Request) -> Person | None:
        try:
            return await person_of(request, sessions)
        except (NotSignedIn, ServiceError):
            return None

    async def me(request: Request, roles: frozenset[Role] | None = None) -> Person:
        person = await person_of(request, sessions)
        if not person.roles:
            raise Forbidden
        if roles is not None:
            require(person, roles)
        return person

    async def checked_form(request: Request) -> Any:
        form = await request.form()
        check_csrf(request, form)
        return form

    # ----------------------------------------------------------------- sign-in

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/login")
    async def login_page(request: Request, next: str = "/") -> Response:
        return pages.render(
            request, "login.html", None, next=_safe_next(next), oidc=oidc is not None
        )

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await checked_form(request)
        email = str(form.get("email", ""))
        target = _safe_next(str(form.get("next", "/")))
        again = dict(next=target, oidc=oidc is not None, email=email)
        address = request.client.host if request.client else "unknown"
        try:
            person = await users.sign_in(
                email, str(form.get("password", "")), address=address, now=now()
            )
        except Throttled as err:
            minutes = timedelta(minutes=math.ceil(err.retry_after / 60))
            answer = pages.render(request, "login.html", None, 429, wait=minutes, **again)
            answer.headers["retry-after"] = str(err.retry_after)
            return answer
        if person is None:
            error = _("Wrong email or password.")
            return pages.render(request, "login.html", None, 401, error=error, **again)
        await sign_in(request, sessions, person, local=True)
        return RedirectResponse(target, status_code=303)

    @app.get("/login/oidc")
    async def login_oidc(request: Request, next: str = "/") -> Response:
        if oidc is None:
            raise NotFound("sign-in with Entra ID is not configured (OIDC_AUTHORITY)")
        request.session["next"] = _safe_next(next)
        redirect: Response = await oidc.authorize_redirect(
            request, str(request.url_for("oidc_callback"))
        )
        return redirect

    @app.get("/auth/callback", name="oidc_callback")
    async def oidc_callback(request: Request) -> Response:
        if oidc is None:
            raise NotFound("sign-in with Entra ID is not configured (OIDC_AUTHORITY)")
        from authlib.integrations.starlette_client import OAuthError

        target = _safe_next(str(request.session.get("next", "/")))
        try:
            token = await oidc.authorize_access_token(request)
        except OAuthError as err:
            log.warning("OIDC sign-in refused: %s", err.error)
            return pages.render(
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
            roles=roles_from_groups(groups, settings),
            locale=best_locale(request.headers.get("accept-language")),
        )
        await sign_in(request, sessions, person, local=False)
        log.info("signed in with Entra ID: %s, roles %s", person.email, sorted(person.roles))
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await checked_form(request)
        await sign_out(request, sessions)
        return RedirectResponse("/login", status_code=303)

    @app.post("/locale")
    async def set_locale(request: Request) -> Response:
        form = await checked_form(request)
        chosen = _choice(Locale, str(form.get("locale", "")))
        if chosen is not None:
            request.session["locale"] = chosen.value
        return RedirectResponse(_safe_next(str(form.get("next", "/"))), status_code=303)

    # ----------------------------------------------------------------- pages

    @app.get("/")
    async def home(request: Request) -> Response:
        person = await me(request)
        if person.may(registry.AGENTS):
            return RedirectResponse("/queues/mine", status_code=303)
        return RedirectResponse("/payables", status_code=303)

    @app.get("/queues/{queue}")
    async def queue_page(
        request: Request,
        queue: str,
        priority: str | None = None,
        category: str | None = None,
        q: str = "",
        page: str | None = None,
    ) -> Response:
        person = await me(request)
        chosen = _choice(Queue, queue)
        if chosen is None:
            raise NotFound(f"no queue {queue!r}")
        service = await connection.get()
        attention = None
        if chosen is Queue.NEEDS_ATTENTION:
            found = await service.list_workflows("needs-attention", limit=1000)
            attention = [execution.id for execution in found]
        filters = CaseFilter(
            _choice(Priority, priority), _choice(Category, category), q.strip()[:200]
        )
        listed = await service.workspace.cases(
            chosen,
            person.email,
            filters,
            _page_number(page),
            now=datetime.now(UTC),
            attention=attention,
        )
        query = {k: v for k, v in (("priority", priority), ("category", category), ("q", q)) if v}
        return pages.render(
            request,
            "queue.html",
            person,
            queue=chosen,
            listed=listed,
            filters=filters,
            query=urlencode(query),
            priorities=[p.value for p in Priority],
            categories=[c.value for c in Category],
        )

    @app.get("/cases/{case_id}")
    async def case_page(request: Request, case_id: str) -> Response:
        return await _case(request, await me(request), case_id)

    async def _case(
        request: Request, person: Person, case_id: str, status_code: int = 200, **problem: Any
    ) -> Response:
        service = await connection.get()
        view = await service.cases.show(case_id)
        actions = [
            action
            for action in _allowed(registry.CASE_ACTIONS, person)
            if action.name != "take" or _may_take(view.owner, person)
        ]
        return _workflow_page(
            request,
            person,
            "case.html",
            f"/cases/{quote(case_id)}",
            service,
            view,
            actions,
            status_code,
            problem,
            thread=await service.workspace.thread(case_id),
        )

    @app.post("/cases/{case_id}/actions/{name}")
    async def case_action(request: Request, case_id: str, name: str) -> Response:
        return await _act(
            request, registry.CASE_ACTIONS, name, case_id, f"/cases/{quote(case_id)}", _case
        )

    @app.get("/collections")
    async def collections_page(request: Request, q: str = "", page: str | None = None) -> Response:
        person = await me(request)
        service = await connection.get()
        listed = await service.workspace.collections(q.strip()[:200], _page_number(page))
        return pages.render(
            request,
            "collections.html",
            person,
            listed=listed,
            q=q,
            query=urlencode({"q": q} if q else {}),
        )

    @app.get("/collections/{invoice_id}")
    async def invoice_page(request: Request, invoice_id: str) -> Response:
        return await _invoice(request, await me(request), invoice_id)

    async def _invoice(
        request: Request, person: Person, invoice_id: str, status_code: int = 200, **problem: Any
    ) -> Response:
        service = await connection.get()
        view = await service.collections.show(invoice_id)
        try:  # the customer's account: every hold on their subscriptions, this invoice's or not
            account = await service.accounts.show(view.customer.tenant_id)
        except NotFound:
            account = None  # nothing of theirs was ever held
        return _workflow_page(
            request,
            person,
            "invoice.html",
            f"/collections/{quote(invoice_id)}",
            service,
            view,
            _allowed(registry.COLLECTIONS_ACTIONS, person),
            status_code,
            problem,
            policy=view.policy or service.settings.collections_policy(),
            account=account,
        )

    @app.post("/collections/{invoice_id}/actions/{name}")
    async def invoice_action(request: Request, invoice_id: str, name: str) -> Response:
        return await _act(
            request,
            registry.COLLECTIONS_ACTIONS,
            name,
            invoice_id,
            f"/collections/{quote(invoice_id)}",
            _invoice,
        )

    @app.get("/payables")
    async def payables_page(request: Request, page: str | None = None) -> Response:
        return await _payables(request, await me(request), "", page=_page_number(page))

    async def _payables(
        request: Request,
        person: Person,
        key: str,
        status_code: int = 200,
        page: int = 1,
        **problem: Any,
    ) -> Response:
        service = await connection.get()
        listed = await service.workspace.payables(page)
        return pages.render(
            request,
            "payables.html",
            person,
            status_code,
            listed=listed,
            record=_allowed({"record": registry.PAYABLES_ACTIONS["record"]}, person),
            paid=registry.PAYABLES_ACTIONS["paid"] if person.may(registry.FINANCE) else None,
            failed_key=key,
            done=request.query_params.get("done"),
            **problem,
        )

    @app.post("/payables/actions/record")
    async def record_payable(request: Request) -> Response:
        return await _act(request, registry.PAYABLES_ACTIONS, "record", "", "/payables", _payables)

    @app.post("/payables/{number}/actions/paid")
    async def payable_paid(request: Request, number: str) -> Response:
        return await _act(
            request, registry.PAYABLES_ACTIONS, "paid", number, "/payables", _payables
        )

    async def _act(
        request: Request,
        actions: dict[str, Action],
        name: str,
        key: str,
        back: str,
        show: Callable[..., Awaitable[Response]],
    ) -> Response:
        """One action of a page: the person's role, the CSRF token, the fields, then the service.
        A refusal or a bad field re-renders the page with the message beside the form."""
        person = await me(request)
        action = actions.get(name)
        if action is None:
            raise NotFound(f"no action {name!r}")
        require(person, action.roles)
        form = await checked_form(request)
        sent = {f.name: str(form.get(f.name, "")).strip() for f in action.fields}
        values: dict[str, Any] = {k: v for k, v in sent.items() if v}
        service = await connection.get()
        try:
            model = action.model(**await action.prepare(values, person, service, key))
            await action.call(service, key, model)
        except ValidationError as err:
            return await show(
                request, person, key, 422, failed=name, refusal=_problems(err), sent=sent
            )
        except (Refused, AlreadyExists) as err:
            return await show(request, person, key, 409, failed=name, refusal=str(err), sent=sent)
        log.info("%s: %s %s", person.email, name, key)
        return RedirectResponse(f"{back}?{urlencode({'done': name})}", status_code=303)

    def _workflow_page(
        request: Request,
        person: Person,
        template: str,
        url: str,
        service: Service,
        view: Any,
        actions: list[Action],
        status_code: int,
        problem: dict[str, Any],
        **context: Any,
    ) -> Response:
        """A case's or an invoice's page: its workflow's view, the actions the person may take
        (and the refusal of the one just sent), the link to the workflow in the Temporal UI."""
        return pages.render(
            request,
            template,
            person,
            status_code,
            view=view,
            actions=actions,
            form_url=f"{url}/actions",
            temporal_url=_temporal_url(service, view.workflow_id),
            done=request.query_params.get("done"),
            **context,
            **problem,
        )

    def _allowed(actions: dict[str, Action], person: Person) -> list[Action]:
        return [action for action in actions.values() if person.may(action.roles)]

    def _temporal_url(service: Service, workflow_id: str) -> str:
        base = settings.temporal_ui_url.rstrip("/")
        return f"{base}/namespaces/{quote(service.client.namespace)}/workflows/{quote(workflow_id)}"

    return app


def _may_take(owner: str | None, person: Person) -> bool:
    """Whether "take this case" is worth offering (web/actions.py decides when it is sent)."""
    return owner != person.email and (owner is None or Role.MANAGER in person.roles)


def _safe_next(target: str) -> str:
    """Only a path of this site: a sign-in link must not send anyone elsewhere (no `//host`, and
    no tab, newline or backslash a browser would drop or turn into one)."""
    if not SAFE_PATH.fullmatch(target) or target.startswith("//"):
        return "/"
    return target


def _oidc_client(settings: Settings) -> Any:
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
