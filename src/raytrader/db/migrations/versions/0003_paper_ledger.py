"""The paper-trading ledger: sessions, Kafka offsets, bars, steps, decisions, orders, fills and
positions (raytrader.paper).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:43:32
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import raytrader.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("config", raytrader.db.types.Document(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("periods_per_year", sa.Float(), nullable=True),
        sa.Column("start_time", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_bar_time", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=True),
        sa.Column("peak_equity", sa.Float(), nullable=True),
        sa.Column("day_start_equity", sa.Float(), nullable=True),
        sa.Column("state", sa.LargeBinary(), nullable=True),
        sa.Column("code_version", sa.String(length=80), nullable=False),
        sa.Column("created_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'stopped', 'halting', 'halted', 'finished')",
            name=op.f("ck_paper_sessions_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_sessions")),
        sa.UniqueConstraint("name", name=op.f("uq_paper_sessions_name")),
    )
    with op.batch_alter_table("paper_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_paper_sessions_created_at_id"), ["created_at", "id"], unique=False
        )

    op.create_table(
        "paper_bars",
        sa.Column("symbol", sa.String(length=80), nullable=False),
        sa.Column("open_time", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["paper_sessions.id"],
            name=op.f("fk_paper_bars_session_id_paper_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_bars")),
        sa.UniqueConstraint(
            "session_id",
            "symbol",
            "open_time",
            name=op.f("uq_paper_bars_session_id_symbol_open_time"),
        ),
    )
    op.create_table(
        "paper_decisions",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=80), nullable=False),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("model_version", sa.String(length=80), nullable=True),
        sa.Column("explanation", raytrader.db.types.Document(), nullable=True),
        sa.Column("feature_time", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["paper_sessions.id"],
            name=op.f("fk_paper_decisions_session_id_paper_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_decisions")),
        sa.UniqueConstraint(
            "session_id",
            "number",
            "symbol",
            name=op.f("uq_paper_decisions_session_id_number_symbol"),
        ),
    )
    op.create_table(
        "paper_fills",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=80), nullable=False),
        sa.Column("units", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("commission", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["paper_sessions.id"],
            name=op.f("fk_paper_fills_session_id_paper_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_fills")),
        sa.UniqueConstraint(
            "session_id", "number", "seq", name=op.f("uq_paper_fills_session_id_number_seq")
        ),
    )
    op.create_table(
        "paper_offsets",
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["paper_sessions.id"],
            name=op.f("fk_paper_offsets_session_id_paper_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "topic", "partition", name=op.f("pk_paper_offsets")),
    )
    op.create_table(
        "paper_orders",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=80), nullable=False),
        sa.Column("previous", sa.Float(), nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=True),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["paper_sessions.id"],
            name=op.f("fk_paper_orders_session_id_paper_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_orders")),
        sa.UniqueConstraint(
            "session_id", "number", "symbol", name=op.f("uq_paper_orders_session_id_number_symbol")
        ),
    )
    op.create_table(
        "paper_positions",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=80), nullable=False),
        sa.Column("units", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["paper_sessions.id"],
            name=op.f("fk_paper_positions_session_id_paper_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_positions")),
        sa.UniqueConstraint(
            "session_id",
            "number",
            "symbol",
            name=op.f("uq_paper_positions_session_id_number_symbol"),
        ),
    )
    op.create_table(
        "paper_steps",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("time", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("cash", sa.Float(), nullable=False),
        sa.Column("drawdown", sa.Float(), nullable=False),
        sa.Column("gross_exposure", sa.Float(), nullable=False),
        sa.Column("lag_s", sa.Float(), nullable=False),
        sa.Column("recorded_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "session_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["paper_sessions.id"],
            name=op.f("fk_paper_steps_session_id_paper_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_steps")),
        sa.UniqueConstraint("session_id", "number", name=op.f("uq_paper_steps_session_id_number")),
    )


def downgrade() -> None:
    op.drop_table("paper_steps")
    op.drop_table("paper_positions")
    op.drop_table("paper_orders")
    op.drop_table("paper_offsets")
    op.drop_table("paper_fills")
    op.drop_table("paper_decisions")
    op.drop_table("paper_bars")
    with op.batch_alter_table("paper_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_sessions_created_at_id"))

    op.drop_table("paper_sessions")
