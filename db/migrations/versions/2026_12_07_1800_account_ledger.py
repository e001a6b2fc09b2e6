"""account ledger: the customer's credit balance on the accounts row

Revision ID: 5d0c41e2a7b9
Revises: ff549388ba26
Create Date: 2026-12-07 18:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d0c41e2a7b9"
down_revision: str | Sequence[str] | None = "ff549388ba26"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ledger", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(
            sa.Column("has_credit", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("refunds_awaiting", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_index(batch_op.f("ix_accounts_has_credit"), ["has_credit"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_accounts_refunds_awaiting"), ["refunds_awaiting"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_refunds_awaiting"))
        batch_op.drop_index(batch_op.f("ix_accounts_has_credit"))
        batch_op.drop_column("refunds_awaiting")
        batch_op.drop_column("has_credit")
        batch_op.drop_column("ledger")
