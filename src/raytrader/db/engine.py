"""Where the experiment store is, connecting to it, and migrating it (Alembic).

The URL is ``RAYTRADER_DB_URL`` (:func:`raytrader.settings.db_url`): the local stack's PostgreSQL
database ``raytrader`` once ``raytrader stack up`` has run, else (local mode only) a SQLite file
for the embedded demo and unit tests; cluster mode requires it. A plain ``postgresql://`` URL is
given the psycopg2 driver that the stack already installs for MLflow.

The schema is Alembic's (``raytrader/db/migrations``, packaged with the code): :func:`upgrade`
brings a database to the newest revision (``raytrader db upgrade``, the API's pre-start, the chart's
hook Job), and :func:`connect` refuses a database that is not at it, naming the command that fixes
it, rather than failing later on a missing column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, StatementError

from raytrader import settings
from raytrader.errors import ConfigError, ExperimentStoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load here (psycopg2 for PostgreSQL)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"{settings.DB_URL_ENV}: not a database URL: {exc}") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise ConfigError(
            f"{settings.DB_URL_ENV}: the experiment store runs on PostgreSQL (or SQLite for the "
            f"demo and tests), not {parsed.get_backend_name()}"
        )
    return parsed.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """An engine on ``url`` (default: the configured store); SQLite gets foreign keys enforced
    and its parent directory created."""
    resolved = normalize_url(url or settings.db_url())
    parsed = make_url(resolved)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_pre_ping=True, connect_args={"connect_timeout": 10})
    engine = create_engine(resolved, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_foreign_keys)
    return engine


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration's revision id."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise ExperimentStoreError(f"no migrations in {MIGRATIONS}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with _reachable(engine), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate to ``revision`` in one transaction; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    with _reachable(engine), engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)
    after = current_revision(engine)
    if after is None:  # pragma: no cover - upgrade to head always stamps
        raise ExperimentStoreError("the upgrade left no revision stamped")
    return before, after


def check_current(engine: Engine) -> None:
    """Refuse a store that is not at the newest revision, naming the command that fixes it."""
    at, head = current_revision(engine), head_revision()
    if at != head:
        state = "has no schema" if at is None else f"is at revision {at}, the code needs {head}"
        raise ExperimentStoreError(
            f"the experiment store {redacted(str(engine.url.render_as_string(False)))} {state}: "
            "run `raytrader db upgrade`"
        )


def table_names(engine: Engine) -> list[str]:
    with _reachable(engine):
        return sorted(inspect(engine).get_table_names())


@contextlib.contextmanager
def _reachable(engine: Engine) -> Iterator[None]:
    """Turn a connection failure into an error naming the store and the setting, and a value a
    column type refused into that refusal."""
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ExperimentStoreError(
            f"cannot reach the experiment store {redacted(engine.url.render_as_string(False))}: "
            f"{reason} (set {settings.DB_URL_ENV}, or `raytrader stack up` for the local one)"
        ) from None
    except StatementError as exc:
        if isinstance(exc.orig, ExperimentStoreError):  # a value a column type refused
            raise exc.orig from None
        raise
