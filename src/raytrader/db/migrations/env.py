"""Alembic's environment for the experiment store: run with the connection that
:func:`raytrader.db.engine.upgrade` passes in ``config.attributes`` (there is no alembic.ini).

SQLite cannot ALTER most things in place, so migrations run in batch mode there (copy and
move), which the models' naming convention makes possible.
"""

from __future__ import annotations

from alembic import context

from raytrader.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only raytrader.db.engine runs migrations
    raise RuntimeError("run migrations through `raytrader db upgrade`")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
