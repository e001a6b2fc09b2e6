"""What every route of the workspace shares, built once by `create_app` and kept on the app:
the settings, the pages, the service connection, the accounts and sessions; who is signed in; how
an action of a page is taken and how a case's or an invoice's page is shown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

from fastapi import Depends
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.settings import Settings
from service import Service, ServiceConnection
from service.errors import AlreadyExists, NotFound, Refused, ServiceError
from service.sessions import Sessions
from service.users import Person, Role, Users
from web.actions import Action
from web.auth import Forbidden, NotSignedIn, check_csrf, person_of, require
from web.forms import BadFields, Problem, problems_of, read_amounts, sent_values
from web.pages import Pages

log = logging.getLogger("web")
# (request, person, the page's key, status code, the refusal to show) -> the page again
Show = Callable[..., Awaitable[Response]]


def allowed(actions: dict[str, Action], person: Person) -> list[Action]:
    return [action for action in actions.values() if person.may(action.roles)]


@dataclass(frozen=True)
class Workspace:
    settings: Settings
    pages: Pages
    connection: ServiceConnection
    users: Users
    sessions: Sessions
    oidc: Any  # Authlib's client for Entra ID, or None

    async def signed_in(self, request: Request) -> Person | None:
        try:
            return await person_of(request, self.sessions)
        except (NotSignedIn, ServiceError):
            return None

    async def me(self, request: Request, roles: frozenset[Role] | None = None) -> Person:
        person = await person_of(request, self.sessions)
        if not person.roles:
            raise Forbidden
        if roles is not None:
            require(person, roles)
        return person

    async def checked_form(self, request: Request) -> Any:
        form = await request.form()
        check_csrf(request, form)
        return form

    async def act(
        self,
        request: Request,
        actions: dict[str, Action],
        name: str,
        key: str,
        back: str,
        show: Show,
    ) -> Response:
        """One action of a page: the person's role, the CSRF token, the fields, then the service.
        A refusal or a bad field re-renders the page with the message beside the form."""
        person = await self.me(request)
        action = actions.get(name)
        if action is None:
            raise NotFound(f"no action {name!r}")
        require(person, action.roles)
        form = await self.checked_form(request)
        sent = sent_values(form, action.fields)
        values: dict[str, Any] = {k: v for k, v in sent.items() if v}
        service = await self.connection.get()
        wrong: list[Problem] = []
        try:
            values = read_amounts(values, action.fields)
            model = action.model(**await action.prepare(values, person, service, key))
            await action.call(service, key, model)
        except BadFields as err:
            wrong = err.problems
        except ValidationError as err:
            wrong = problems_of(err, action.fields)
        except (Refused, AlreadyExists) as err:
            return await show(request, person, key, 409, failed=name, refusal=str(err), sent=sent)
        if wrong:
            return await show(request, person, key, 422, failed=name, problems=wrong, sent=sent)
        log.info("%s: %s %s", person.email, name, key)
        return RedirectResponse(f"{back}?{urlencode({'done': name})}", status_code=303)

    def workflow_page(
        self,
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
        return self.pages.render(
            request,
            template,
            person,
            status_code,
            view=view,
            actions=actions,
            form_url=f"{url}/actions",
            temporal_url=self.temporal_url(service, view.workflow_id),
            done=request.query_params.get("done"),
            **context,
            **problem,
        )

    def temporal_url(self, service: Service, workflow_id: str) -> str:
        base = self.settings.temporal_ui_url.rstrip("/")
        return f"{base}/namespaces/{quote(service.client.namespace)}/workflows/{quote(workflow_id)}"


def workspace(request: Request) -> Workspace:
    return cast(Workspace, request.app.state.workspace)


WorkspaceDep = Annotated[Workspace, Depends(workspace)]
