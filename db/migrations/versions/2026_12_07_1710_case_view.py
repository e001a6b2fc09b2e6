"""the case's view beside its row, for the workspace's case page

Revision ID: 5d1e0c7a9b42
Revises: 5d0c41e2a7b9
Create Date: 2026-12-07 17:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1e0c7a9b42"
down_revision: str | Sequence[str] | None = "5d0c41e2a7b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("view", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("view")
