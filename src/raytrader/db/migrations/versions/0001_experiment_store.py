"""The experiment store: runs, episodes, steps, backtests, trades, operations, optimizations,
trials, evaluations and their rows.

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-07 20:18:05.553365
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import raytrader.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("config", raytrader.db.types.Document(), nullable=False),
        sa.Column("summary", raytrader.db.types.Document(), nullable=False),
        sa.Column("code_version", sa.String(length=80), nullable=False),
        sa.Column("created_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'failed')", name=op.f("ck_evaluations_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint("key", name=op.f("uq_evaluations_key")),
    )
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evaluations_created_at_id"), ["created_at", "id"], unique=False
        )

    op.create_table(
        "optimizations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("metric", sa.String(length=80), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("config", raytrader.db.types.Document(), nullable=False),
        sa.Column("best_trial", sa.String(length=100), nullable=True),
        sa.Column("best_score", sa.Float(), nullable=True),
        sa.Column("best_params", raytrader.db.types.Document(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("code_version", sa.String(length=80), nullable=False),
        sa.Column("created_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'failed')", name=op.f("ck_optimizations_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimizations")),
        sa.UniqueConstraint("key", name=op.f("uq_optimizations_key")),
    )
    with op.batch_alter_table("optimizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_optimizations_created_at_id"), ["created_at", "id"], unique=False
        )

    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("config", raytrader.db.types.Document(), nullable=False),
        sa.Column("code_version", sa.String(length=80), nullable=False),
        sa.Column("data", sa.String(length=400), nullable=True),
        sa.Column("symbol", sa.String(length=80), nullable=True),
        sa.Column("timeframe", sa.String(length=20), nullable=True),
        sa.Column("data_start", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("data_end", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("feature_service", sa.String(length=120), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("metrics", raytrader.db.types.Document(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'failed')", name=op.f("ck_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("key", name=op.f("uq_runs_key")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_runs_created_at_id"), ["created_at", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_runs_kind_created_at"), ["kind", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_runs_mlflow_run_id"), ["mlflow_run_id"], unique=False)

    op.create_table(
        "backtests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("strategy", sa.String(length=200), nullable=False),
        sa.Column("params", raytrader.db.types.Document(), nullable=False),
        sa.Column("data", sa.String(length=400), nullable=False),
        sa.Column("symbol", sa.String(length=80), nullable=False),
        sa.Column("timeframe", sa.String(length=20), nullable=False),
        sa.Column("start", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("end", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("bars", sa.Integer(), nullable=False),
        sa.Column("sim", raytrader.db.types.Document(), nullable=False),
        sa.Column("metrics", raytrader.db.types.Document(), nullable=False),
        sa.Column("equity", raytrader.db.types.Document(), nullable=False),
        sa.Column("code_version", sa.String(length=80), nullable=False),
        sa.Column("created_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_backtests_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtests")),
        sa.UniqueConstraint("key", name=op.f("uq_backtests_key")),
    )
    with op.batch_alter_table("backtests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_backtests_created_at_id"), ["created_at", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_backtests_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_backtests_strategy_created_at"), ["strategy", "created_at"], unique=False
        )

    op.create_table(
        "episodes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("split", sa.String(length=20), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=True),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("reward_sum", sa.Float(), nullable=False),
        sa.Column("total_return", sa.Float(), nullable=True),
        sa.Column("sharpe", sa.Float(), nullable=True),
        sa.Column("max_drawdown", sa.Float(), nullable=True),
        sa.Column("trades", sa.Integer(), nullable=False),
        sa.Column("start_time", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_time", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_episodes_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
        sa.UniqueConstraint("run_id", "key", name=op.f("uq_episodes_run_id_key")),
    )
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_episodes_run_id_id"), ["run_id", "id"], unique=False)

    op.create_table(
        "evaluation_rows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "evaluation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("candidate", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("metrics", raytrader.db.types.Document(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_evaluation_rows_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_rows")),
        sa.UniqueConstraint(
            "evaluation_id",
            "dataset",
            "candidate",
            name=op.f("uq_evaluation_rows_evaluation_id_dataset_candidate"),
        ),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "optimization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("params", raytrader.db.types.Document(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("window_scores", raytrader.db.types.Document(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("early_stopped", sa.Boolean(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["optimization_id"],
            ["optimizations.id"],
            name=op.f("fk_trials_optimization_id_optimizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.UniqueConstraint("optimization_id", "key", name=op.f("uq_trials_optimization_id_key")),
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_trials_optimization_id_score"),
            ["optimization_id", "score"],
            unique=False,
        )

    op.create_table(
        "operations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "backtest_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "episode_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("time", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("units", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "(backtest_id IS NULL) <> (episode_id IS NULL)", name=op.f("ck_operations_one_owner")
        ),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.id"],
            name=op.f("fk_operations_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episodes.id"],
            name=op.f("fk_operations_episode_id_episodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint("backtest_id", "number", name=op.f("uq_operations_backtest_id_number")),
        sa.UniqueConstraint("episode_id", "number", name=op.f("uq_operations_episode_id_number")),
    )
    op.create_table(
        "steps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "episode_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("t", sa.Integer(), nullable=False),
        sa.Column("time", raytrader.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("action", sa.Float(), nullable=True),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("position", sa.Float(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("equity", sa.Float(), nullable=True),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("features_digest", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episodes.id"],
            name=op.f("fk_steps_episode_id_episodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
        sa.UniqueConstraint("episode_id", "t", name=op.f("uq_steps_episode_id_t")),
    )
    op.create_table(
        "trades",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "backtest_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "episode_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("units", sa.Float(), nullable=False),
        sa.Column("max_units", sa.Float(), nullable=False),
        sa.Column("entry_time", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("exit_time", raytrader.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("exit_price", sa.Float(), nullable=False),
        sa.Column("pnl", sa.Float(), nullable=False),
        sa.Column("trade_return", sa.Float(), nullable=False),
        sa.Column("commission", sa.Float(), nullable=False),
        sa.Column("carry", sa.Float(), nullable=False),
        sa.Column("exit_reason", sa.String(length=20), nullable=False),
        sa.CheckConstraint(
            "(backtest_id IS NULL) <> (episode_id IS NULL)", name=op.f("ck_trades_one_owner")
        ),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.id"],
            name=op.f("fk_trades_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episodes.id"],
            name=op.f("fk_trades_episode_id_episodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
        sa.UniqueConstraint("backtest_id", "number", name=op.f("uq_trades_backtest_id_number")),
        sa.UniqueConstraint("episode_id", "number", name=op.f("uq_trades_episode_id_number")),
    )


def downgrade() -> None:
    op.drop_table("trades")
    op.drop_table("steps")
    op.drop_table("operations")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trials_optimization_id_score"))

    op.drop_table("trials")
    op.drop_table("evaluation_rows")
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_episodes_run_id_id"))

    op.drop_table("episodes")
    with op.batch_alter_table("backtests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backtests_strategy_created_at"))
        batch_op.drop_index(batch_op.f("ix_backtests_run_id"))
        batch_op.drop_index(batch_op.f("ix_backtests_created_at_id"))

    op.drop_table("backtests")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_mlflow_run_id"))
        batch_op.drop_index(batch_op.f("ix_runs_kind_created_at"))
        batch_op.drop_index(batch_op.f("ix_runs_created_at_id"))

    op.drop_table("runs")
    with op.batch_alter_table("optimizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_optimizations_created_at_id"))

    op.drop_table("optimizations")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluations_created_at_id"))

    op.drop_table("evaluations")
