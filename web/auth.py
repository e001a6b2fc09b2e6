"""Who is signed in, and the checks every request passes: the session (a signed, HttpOnly,
SameSite cookie; starlette's SessionMiddleware), its idle timeout, and the CSRF token every form
carries."""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from starlette.requests import Request

from core.models import Locale
from service.users import Person, Role

SESSION_COOKIE = "workspace_session"
CSRF_FIELD = "csrf_token"


class NotSignedIn(Exception):
    """No session, or it timed out: the person signs in again."""


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


def sign_in(request: Request, person: Person) -> None:
    """A fresh session for the person: nothing of the one before it (no fixation), a new token."""
    request.session.clear()
    request.session.update(
        {
            "email": person.email,
            "name": person.name,
            "roles": sorted(role.value for role in person.roles),
            "locale": person.locale.value,
            "seen": int(time.time()),
            "csrf": secrets.token_urlsafe(32),
        }
    )


def sign_out(request: Request) -> None:
    request.session.clear()


def person_of(request: Request, idle_seconds: int) -> Person:
    """The signed-in person; NotSignedIn when there is none or the session has been idle too
    long (the cookie's own max-age ends it in the browser too)."""
    session = request.session
    email, seen = session.get("email"), session.get("seen")
    if not isinstance(email, str) or not isinstance(seen, int):
        raise NotSignedIn
    now = int(time.time())
    if now - seen > idle_seconds:
        session.clear()
        raise NotSignedIn
    if now - seen > 60:  # the cookie is re-signed at most once a minute
        session["seen"] = now
    return Person(
        email=email,
        name=str(session.get("name", email)),
        roles=frozenset(Role(role) for role in session.get("roles", [])),
        locale=Locale(session.get("locale", Locale.ZH_CN.value)),
    )


def require(person: Person, roles: frozenset[Role]) -> None:
    if not person.may(roles):
        raise Forbidden
