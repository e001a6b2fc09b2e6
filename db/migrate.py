"""Bring a database to the newest schema: idempotent, and safe when several processes start at once.

`python -m db.migrate` migrates the settings' DATABASE_URL; tests and scripts call `upgrade(url)`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, make_url, text
from sqlalchemy.pool import NullPool

from core.settings import load_settings
from db.session import MIGRATIONS_DIR, make_engine

log = logging.getLogger(__name__)

# Any constant will do, as long as every migrating process uses the same one.
_ADVISORY_LOCK_KEY = 2_111_924_001


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config built in code; env.py takes the url from ``attributes``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # attributes, not sqlalchemy.url: the ini parser would choke on a '%' in a password
        config.attributes["database_url"] = url
    return config


def upgrade(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision (a no-op when it is there already)."""
    command.upgrade(alembic_config(url), "head")


@contextmanager
def locked_connection(url: str) -> Iterator[Connection]:
    """One transaction holding the migration lock, so concurrent upgrades run one after another."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
                )
            elif connection.dialect.name == "sqlite":
                # pysqlite runs DDL outside any transaction; take the write lock for the whole run
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield connection
    finally:
        engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    url = load_settings().database_url
    upgrade(url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    log.info("database %s is at revision %s", make_url(url).render_as_string(), head)


if __name__ == "__main__":
    main()
