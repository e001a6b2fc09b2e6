"""Failed sign-ins slow the next ones down, per account and per client address: after a few
failures sign-in waits, each further failure doubling the wait to a cap. Kept in the database, so
that every workspace process counts the same failures; an account that does not exist is counted
like one that does, so the wait tells nobody which accounts exist."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from core.settings import Settings
from db.session import lock_for_write, twice_on_conflict
from db.tables import SignInFailures
from service.calls import reading

FIRST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(minutes=15)
FORGET = timedelta(hours=1)  # failures this long ago no longer count


@dataclass(frozen=True)
class Rule:
    """How many failures of one kind of subject are free before sign-in waits."""

    kind: str
    free: int

    def subject(self, value: str) -> str:
        return f"{self.kind}:{value}"[:400]

    def wait(self, failures: int) -> timedelta:
        """How long sign-in waits after this many failures in a row."""
        if failures < self.free:
            return timedelta(0)
        return min(LONGEST_WAIT, FIRST_WAIT * (1 << min(failures - self.free, 16)))


ACCOUNT = Rule("account", free=5)
# people of one office may share an address (and a reverse proxy may hide theirs): more are free
ADDRESS = Rule("address", free=20)


class SignInThrottle:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def wait(self, email: str, address: str, now: datetime) -> int:
        """The seconds until the account (known or not) and the address may try again; 0: now."""
        subjects = [ACCOUNT.subject(email), ADDRESS.subject(address)]
        with reading(self._settings.database_url) as session:
            until = session.scalars(
                select(SignInFailures.locked_until).where(
                    SignInFailures.subject.in_(subjects), SignInFailures.locked_until > now
                )
            ).all()
        return max(
            (math.ceil((moment - now).total_seconds()) for moment in until if moment), default=0
        )

    def failed(self, email: str, address: str, now: datetime) -> None:
        for rule, value in ((ACCOUNT, email), (ADDRESS, address)):
            twice_on_conflict(functools.partial(self._count, rule, rule.subject(value), now))

    def _count(self, rule: Rule, subject: str, now: datetime) -> None:
        with reading(self._settings.database_url) as session:
            lock_for_write(session)
            session.execute(
                delete(SignInFailures).where(SignInFailures.last_failure_at < now - FORGET)
            )
            row = session.get(SignInFailures, subject, with_for_update=True)
            if row is None:
                row = SignInFailures(subject=subject, failures=0)
                session.add(row)
            row.failures += 1
            row.last_failure_at = now
            wait = rule.wait(row.failures)
            row.locked_until = now + wait if wait else None
            session.commit()

    def succeeded(self, email: str) -> None:
        """The account's password was given: its failures are forgotten (the address's are not:
        one account of one's own must not buy more guesses at others)."""
        with reading(self._settings.database_url) as session:
            session.execute(
                delete(SignInFailures).where(SignInFailures.subject == ACCOUNT.subject(email))
            )
            session.commit()
