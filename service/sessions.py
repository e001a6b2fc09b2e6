"""The workspace's sessions, kept in the database: the cookie carries only a session's token, so
signing out, disabling the account and the maximum lifetime end a session at once in every
workspace process, and a local account's roles are read again at every request."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from core.models import Locale
from core.settings import Settings
from db.tables import WorkspaceSession, WorkspaceUser
from service.calls import reading
from service.users import Person, Role

TOUCH = timedelta(minutes=1)  # a session's last request is written at most once a minute


def _hashed(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle = timedelta(minutes=settings.web_session_idle_minutes)
        self._longest = timedelta(hours=settings.web_session_max_hours)

    async def start(self, person: Person, *, local: bool, now: datetime) -> str:
        """A new session of the person; its token, for the cookie. `local`: a local account's
        (its roles are read at every request), else an Entra ID sign-in's (the person's roles
        are the session's). Sessions that have ended meanwhile are cleared away."""
        token = secrets.token_urlsafe(32)
        await asyncio.to_thread(self._start, _hashed(token), person, local, now)
        return token

    def _start(self, key: str, person: Person, local: bool, now: datetime) -> None:
        with reading(self._settings.database_url) as session:
            session.execute(
                delete(WorkspaceSession).where(
                    or_(
                        WorkspaceSession.seen_at < now - self._idle,
                        WorkspaceSession.started_at < now - self._longest,
                    )
                )
            )
            session.add(
                WorkspaceSession(
                    token_hash=key,
                    email=person.email,
                    local=local,
                    name=person.name[:200],
                    roles=sorted(role.value for role in person.roles),
                    locale=person.locale.value,
                    started_at=now,
                    seen_at=now,
                )
            )
            session.commit()

    async def person(self, token: str, *, now: datetime) -> Person | None:
        """Who the session is, as of now; None when it has ended (signed out, idle or older than
        the maximum lifetime, the local account disabled or removed): it is gone then."""
        return await asyncio.to_thread(self._person, _hashed(token), now)

    def _person(self, key: str, now: datetime) -> Person | None:
        query = (
            select(WorkspaceSession, WorkspaceUser)
            .outerjoin(WorkspaceUser, WorkspaceUser.email == WorkspaceSession.email)
            .where(WorkspaceSession.token_hash == key)
        )
        this = WorkspaceSession.token_hash == key
        with reading(self._settings.database_url) as session:
            found = session.execute(query).one_or_none()
            if found is None:
                return None
            row, user = found
            account = user if row.local else None
            ended = (
                now - row.seen_at > self._idle
                or now - row.started_at > self._longest
                or (row.local and (account is None or account.disabled))
            )
            if ended:
                session.execute(delete(WorkspaceSession).where(this))
            elif now - row.seen_at > TOUCH:
                session.execute(update(WorkspaceSession).where(this).values(seen_at=now))
            session.commit()
        if ended:
            return None
        name, roles = (account.name, account.roles) if account else (row.name, row.roles)
        return Person(row.email, name, frozenset(Role(r) for r in roles), Locale(row.locale))

    async def end(self, token: str) -> None:
        """Sign out: the session's token is worth nothing from now on."""
        await asyncio.to_thread(self._end, _hashed(token))

    def _end(self, key: str) -> None:
        with reading(self._settings.database_url) as session:
            session.execute(delete(WorkspaceSession).where(WorkspaceSession.token_hash == key))
            session.commit()
