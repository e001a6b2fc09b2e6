"""Alembic environment: compares against the models' metadata, migrates under db.migrate's lock."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import TypeDecorator

import db.tables  # noqa: F401  (registers the tables on Model.metadata)
from core.settings import load_settings
from db.base import Model
from db.migrate import locked_connection

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    # db.migrate.upgrade passes the url; the alembic CLI reads DATABASE_URL as the worker does
    url = config.attributes.get("database_url")
    return url if isinstance(url, str) else load_settings().database_url


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # migrations spell out the stored type, so they never import application code
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


if context.is_offline_mode():
    context.configure(
        url=_database_url(),
        target_metadata=Model.metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    with locked_connection(_database_url()) as connection:
        context.configure(
            connection=connection,
            target_metadata=Model.metadata,
            compare_type=True,
            render_as_batch=True,  # SQLite alters tables by copying them
            render_item=_render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
