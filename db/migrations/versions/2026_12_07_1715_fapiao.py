"""fapiao: the fapiao issued per bill, and the fapiao task open on a case

Revision ID: 5f3a9c1e7b24
Revises: ff7fc8cce381
Create Date: 2026-12-07 17:15:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5f3a9c1e7b24"
down_revision: str | Sequence[str] | None = "ff7fc8cce381"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fapiao",
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("buyer_name", sa.String(length=500), nullable=False),
        sa.Column("buyer_tax_id", sa.String(length=20), nullable=False),
        sa.Column("reverses", sa.String(length=20), nullable=True),
        sa.Column("in_full", sa.Boolean(), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=True),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_fapiao")),
    )
    op.create_index(op.f("ix_fapiao_invoice_id"), "fapiao", ["invoice_id"], unique=False)
    op.create_index(op.f("ix_fapiao_reverses"), "fapiao", ["reverses"], unique=False)
    op.create_index(op.f("ix_fapiao_case_id"), "fapiao", ["case_id"], unique=False)
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("fapiao_task", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("fapiao_task_data", sa.JSON(), nullable=True))
        batch.create_index(batch.f("ix_cases_fapiao_task"), ["fapiao_task"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index(batch.f("ix_cases_fapiao_task"))
        batch.drop_column("fapiao_task_data")
        batch.drop_column("fapiao_task")
    op.drop_index(op.f("ix_fapiao_case_id"), table_name="fapiao")
    op.drop_index(op.f("ix_fapiao_reverses"), table_name="fapiao")
    op.drop_index(op.f("ix_fapiao_invoice_id"), table_name="fapiao")
    op.drop_table("fapiao")
