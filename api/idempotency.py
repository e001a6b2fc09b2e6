"""Idempotency and replay protection in the database, shared by every API process and kept across
restarts.

A caller names each request with an `Idempotency-Key` (signed with the request). The first request
under a key claims it; the same key and the same request again gets the first answer; the same key
with another request is refused (409). A claim is released when the outcome is not final (Temporal
unavailable: 5xx), so a retry runs at once; a claim left by a process that died is taken over
after `PENDING_TTL`. Either way the retry keeps the key's first claim, and with it the ids the
request creates (`core.ids.request_case_id`): what an attempt started before it broke is found,
not started twice. A replayed signed request is one with the same key: answered, never carried
out twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.session import lock_for_write
from db.tables import IntakeRequest

PENDING, DONE = "pending", "done"
# longer than any request takes (Temporal's own calls give up well before)
PENDING_TTL = timedelta(seconds=120)
KEY_CHARS = 255


@dataclass(frozen=True)
class Claimed:
    """This request runs under the key, first claimed then (by this attempt, or by one that
    died: what it started is found again under the same ids)."""

    caller: str
    key: str
    first_claimed: datetime


@dataclass(frozen=True)
class Answered:
    """The key's request was carried out before: its answer."""

    status: int
    body: bytes


@dataclass(frozen=True)
class Conflict:
    """The key is taken by another request, or its request is still running."""

    message: str
    in_progress: bool = False


Claim = Claimed | Answered | Conflict


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def key_problem(key: str | None) -> str | None:
    """Why an Idempotency-Key header cannot be used, or None."""
    if not key:
        return "the Idempotency-Key header is required on every POST (a unique id per request)"
    if len(key) > KEY_CHARS or not key.isascii() or not key.isprintable():
        return f"Idempotency-Key must be 1 to {KEY_CHARS} printable ASCII characters"
    return None


def final(status: int) -> bool:
    """Whether an answer stands for good (a 5xx, 408 or 429 says: try again)."""
    return status < 500 and status not in (408, 429)


class IntakeRequests:
    """The store; its methods are synchronous (the API runs them in a thread)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def claim(
        self,
        caller: str,
        key: str,
        method: str,
        path: str,
        body: bytes,
        now: datetime | None = None,
    ) -> Claim:
        now = now or datetime.now(UTC)
        fingerprint = (method, path, digest(body))
        query = select(IntakeRequest).where(
            IntakeRequest.caller == caller, IntakeRequest.idempotency_key == key
        )
        with self._sessions.begin() as session:
            lock_for_write(session)
            row = session.scalars(query.with_for_update()).first()
            if row is not None:
                if (row.method, row.path, row.body_sha256) != fingerprint:
                    return Conflict(
                        f"Idempotency-Key {key!r} was used for another request: use a new key"
                    )
                if row.state == DONE and row.response_status is not None:
                    return Answered(row.response_status, (row.response_body or "").encode())
                if row.updated_at > now - PENDING_TTL:
                    return Conflict(
                        f"the request under Idempotency-Key {key!r} is still running: retry "
                        "it later",
                        in_progress=True,
                    )
                row.updated_at = now  # its process died: this one takes it over
                return Claimed(caller, key, row.created_at)
            try:
                with session.begin_nested():
                    session.add(
                        IntakeRequest(
                            caller=caller,
                            idempotency_key=key,
                            method=method,
                            path=path,
                            body_sha256=fingerprint[2],
                            state=PENDING,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            except IntegrityError:  # another process claimed it between our read and insert
                return Conflict(
                    f"the request under Idempotency-Key {key!r} is still running: retry it later",
                    in_progress=True,
                )
            return Claimed(caller, key, now)

    def finish(self, caller: str, key: str, status: int, body: bytes) -> None:
        """Keep a final answer, or release the key for a retry."""
        where = (IntakeRequest.caller == caller, IntakeRequest.idempotency_key == key)
        with self._sessions.begin() as session:
            row = session.scalars(select(IntakeRequest).where(*where)).first()
            if row is not None and not final(status):
                if row.state == PENDING:  # free at once, its first claim kept (see Claimed)
                    row.updated_at = datetime.now(UTC) - PENDING_TTL - timedelta(seconds=1)
                return
            if row is not None:
                row.state, row.response_status = DONE, status
                row.response_body = body.decode("utf-8", "replace")
                row.updated_at = datetime.now(UTC)

    def release(self, caller: str, key: str) -> None:
        """The request broke before it had an answer: a retry runs it."""
        self.finish(caller, key, 500, b"")
