"""A portfolio backtest's trades and operations carry their symbol (NULL: the owner's one symbol).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08 00:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("trades", "operations"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("symbol", sa.String(length=80), nullable=True))


def downgrade() -> None:
    for table in ("operations", "trades"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("symbol")
