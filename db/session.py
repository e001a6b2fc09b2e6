"""Engines and sessions.

SQLite (the default) gets WAL and a busy timeout so the worker's threads share it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

import db.tables  # noqa: F401  (registers every mapper before configure_mappers)
from core.files import private_file

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            private_file(Path(parsed.database))  # customer data: the owner's alone
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # an activity's thread cannot be cancelled: a server that stops answering must not hold it
    # for ever (a connection attempt gives up after 10 s, a dead peer is noticed within a minute)
    connect_args = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30}
    connect_args |= {"keepalives_interval": 10, "keepalives_count": 3}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@functools.cache
def shared_sessions(url: str) -> sessionmaker[Session]:
    """One engine and session factory per database for a process's many short reads (the
    service layer's), made on first use."""
    return make_session_factory(make_engine(url))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # configure the mappers now: done lazily inside an activity, a cancellation would poison them
    configure_mappers()
    return sessionmaker(engine, expire_on_commit=False)


def lock_for_write(session: Session) -> None:
    """At the start of a transaction that reads, then writes: on SQLite take the write lock now,
    as SELECT ... FOR UPDATE does for its rows on PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))


def twice_on_conflict(write: Callable[[], None]) -> None:
    """An upsert that reads, then inserts: a concurrent attempt may insert the same row between
    the two (IntegrityError); the second pass finds it and updates or skips instead."""
    try:
        write()
    except IntegrityError:
        write()


@contextmanager
def one_off_session(url: str) -> Iterator[Session]:
    """A session on an engine of its own, disposed of afterwards: for a command or a check that
    reads the database once (a report, `verify`), not for the worker's many transactions."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def database_problem(engine: Engine) -> str | None:
    """None when the database answers `SELECT 1`, else why not (a readiness probe's answer)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as err:  # whatever the driver raises, the answer is "not ready"
        return f"database: {type(err).__name__}"
    return None
