"""Who is signed in, and the checks every request passes: the session (its token in a signed,
HttpOnly, SameSite cookie, starlette's SessionMiddleware; the session itself in the database,
`service.sessions`, with its idle timeout and maximum lifetime), and the CSRF token every form
carries."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from core.models import Locale
from service.sessions import Sessions
from service.users import Person, Role

SESSION_COOKIE = "workspace_session"
CSRF_FIELD = "csrf_token"


class NotSignedIn(Exception):
    """No session, or it has ended: the person signs in again."""


class Forbidden(Exception):
    """The signed-in person may not do this (403); nothing changed."""


class BadCsrf(Exception):
    """A form without this session's CSRF token (403); nothing changed."""


def csrf_token(request: Request) -> str:
    """This session's token, made on first use (also before sign-in: the sign-in form has one)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, form: Any) -> None:
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if not (isinstance(sent, str) and isinstance(expected, str)):
        raise BadCsrf
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise BadCsrf


def now() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)


async def sign_in(request: Request, sessions: Sessions, person: Person, *, local: bool) -> None:
    """A fresh session for the person: nothing of the one before it (no fixation; the one before
    ends), a new token. `local`: a local account's (its roles are read at every request)."""
    token = await sessions.start(person, local=local, now=now())
    await sign_out(request, sessions)
    request.session.update(
        {"session": token, "locale": person.locale.value, "csrf": secrets.token_urlsafe(32)}
    )


async def sign_out(request: Request, sessions: Sessions) -> None:
    token = request.session.get("session")
    if isinstance(token, str):
        await sessions.end(token)
    request.session.clear()


async def person_of(request: Request, sessions: Sessions) -> Person:
    """The signed-in person, in the language they chose; NotSignedIn when there is none or the
    session has ended (signed out, idle too long, too old, the account disabled)."""
    token = request.session.get("session")
    if not isinstance(token, str):
        raise NotSignedIn
    person = await sessions.person(token, now=now())
    if person is None:
        request.session.clear()
        raise NotSignedIn
    return replace(person, locale=Locale(request.session.get("locale", person.locale.value)))


def require(person: Person, roles: frozenset[Role]) -> None:
    if not person.may(roles):
        raise Forbidden
