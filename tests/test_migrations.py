"""The migrations build exactly the models' schema, and upgrading is safe to repeat and to race."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, insert, inspect, select

import db.tables  # noqa: F401  (registers the tables on Model.metadata)
from core.models import CaseStatus, Priority
from db.base import Model
from db.migrate import alembic_config, upgrade
from db.session import make_session_factory
from db.tables import Case, CaseAttachment, CaseEventRow
from db.tables import table as core_table
from service.inbound import ACTOR
from tests.test_reports import NOW, _case
from tests.workspace_support import AGENT

ROOT = Path(__file__).resolve().parent.parent
TABLES = {
    "alembic_version",
    "cases",
    "case_events",
    "email_log",
    "email_thread",
    "inbound_mail",
    "email_events",
    "vianet_escalations",
    "partner_center_actions",
    "collections",
    "collections_events",
    "vianet_invoices",
    "intake_requests",
    "accounts",
    "account_events",
    "workspace_users",
    "workspace_sessions",
    "sign_in_failures",
    "staff_alerts",
    "case_ratings",
    "case_attachments",
    "reply_macros",
    "statement_lines",
    "payer_accounts",
    "fapiao",
    "case_links",
}


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _differences(engine: Engine, metadata: MetaData) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_match_the_models(engine: Engine) -> None:
    assert _current_revision(engine) == _head()
    assert set(inspect(engine).get_table_names()) == TABLES
    assert _differences(engine, Model.metadata) == []


def test_the_comparison_would_see_a_model_change(engine: Engine) -> None:
    changed = MetaData()
    for table in Model.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["cases"].append_column(Column("refund_reference", Integer))
    assert [diff[0] for diff in _differences(engine, changed)] == ["add_column"]


def test_upgrade_is_idempotent_and_safe_to_race(database_url: str, engine: Engine) -> None:
    command.downgrade(alembic_config(database_url), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    # separate processes, as when several workers start at once
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(upgrade, [database_url] * 4))
    upgrade(database_url)
    assert _current_revision(engine) == _head()
    assert set(inspect(engine).get_table_names()) == TABLES
    assert _differences(engine, Model.metadata) == []


def test_the_command_line_migrates_and_logs_one_line(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    migrate = subprocess.run(
        [sys.executable, "-m", "db.migrate"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr
    assert migrate.stdout == ""
    assert len(migrate.stderr.splitlines()) == 1
    assert f"at revision {_head()}" in migrate.stderr
    # the alembic CLI (alembic.ini) reaches the same database and finds nothing to autogenerate
    check = subprocess.run(
        [sys.executable, "-m", "alembic", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_the_migration_lists_the_files_the_earlier_notes_named(
    database_url: str, engine: Engine
) -> None:
    command.downgrade(alembic_config(database_url), "95c9152466b6")  # before case_attachments
    digest, other = "ab" * 32, "cd" * 32
    note = (
        "attachments of the customer's email:\n"
        f"发票 (10月).pdf (1,234 bytes, sha256 {digest})\n"
        "病毒.exe (99 bytes, not kept: type application/x-msdownload is not taken)\n"
        f"截图.png (68 bytes, sha256 {other})"
    )
    case = _case("C1", CaseStatus.OPEN, Priority.NORMAL, timedelta(0), now=NOW)
    then = {column["name"] for column in inspect(engine).get_columns("cases")}  # that revision's
    row = {c.name: getattr(case, c.key) for c in Case.__table__.columns if c.name in then}
    with make_session_factory(engine)() as session:
        # the row as that revision had it: the columns added since left out
        session.execute(insert(core_table(Case)), {k: v for k, v in row.items() if v is not None})
        session.flush()
        for seq, (actor, text) in enumerate(
            [(ACTOR, note), (ACTOR, note), (AGENT, f"{note}\nx.pdf (1 bytes, sha256 {'0' * 64})")]
        ):
            session.add(
                CaseEventRow(case_id="C1", seq=seq, at=NOW, kind="note", actor=actor, text=text)
            )
        session.commit()
    upgrade(database_url)
    with make_session_factory(engine)() as session:
        rows = session.scalars(select(CaseAttachment).order_by(CaseAttachment.id)).all()
    assert [(r.case_id, r.name, r.size, r.sha256, r.content_type) for r in rows] == [
        ("C1", "发票 (10月).pdf", 1234, digest, "application/pdf"),
        ("C1", "截图.png", 68, other, "image/png"),
    ]
