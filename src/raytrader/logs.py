"""Where log lines go: the libraries' output while a command talks to a person, and the format and
level of every raytrader process in a deployment.

MLflow, Ray, Feast, SQLAlchemy/Alembic and Python's warnings write progress bars, INFO lines and
deprecation notices to the terminal. :func:`library_output_to` sends all of it to a log file for
the duration of a block (the demo keeps it next to its report) and puts everything back afterwards;
``raytrader --debug`` skips it, so they print as usual.

In a deployment (the chart sets both) :func:`configure_from_env` reads ``RAYTRADER_LOG_LEVEL``
(DEBUG, INFO, WARNING, ERROR: raytrader's own loggers) and ``RAYTRADER_LOG_FORMAT`` (``json``: one
object per line with time in UTC, level, logger, message, the exception and any ``extra=`` fields;
``text``) and installs one handler on stderr for raytrader's lines and the libraries' warnings.
With neither set nothing changes: a person at a terminal gets Python's defaults.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from raytrader.errors import ConfigError

#: the loggers libraries write to (each also covers its children: ``mlflow.pyfunc``, ``ray.serve``)
#: and the lowest level kept: SQLAlchemy's and Alembic's INFO lines describe every mapper
LIBRARY_LOGGERS = {
    "mlflow": logging.INFO,
    "ray": logging.INFO,
    "feast": logging.INFO,
    "alembic": logging.WARNING,
    "sqlalchemy": logging.WARNING,
    "huey": logging.WARNING,
    "urllib3": logging.WARNING,
    "filelock": logging.WARNING,
    "py.warnings": logging.WARNING,
    "optuna": logging.WARNING,
}
#: MLflow draws a progress bar per artifact download unless this is "false"
_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def library_output_to(path: Path) -> Iterator[Path]:
    """Inside the block, the :data:`LIBRARY_LOGGERS` (from their levels up), Python warnings and MLflow's
    direct prints go to ``path`` (appended), not to the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # a library configures its loggers when it is imported: import first, then take them over
    with contextlib.suppress(ImportError):
        import ray  # noqa: F401
    mlflow_stream = None
    with contextlib.suppress(ImportError):
        import mlflow.pyfunc  # noqa: F401 - importing it switches MLflow's print stream back on
        from mlflow.utils import logging_utils

        mlflow_stream = logging_utils.MLFLOW_LOGGING_STREAM  # its eprint() writes here
    saved = []
    for name, level in LIBRARY_LOGGERS.items():
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # a library's own sub-loggers with handlers of their own (RLlib's and Tune's, set up when
    # they are imported) print past their parent: they write to the file too
    for key, obj in list(logging.root.manager.loggerDict.items()):
        if (
            isinstance(obj, logging.Logger)
            and obj.handlers
            and any(key.startswith(f"{name}.") for name in LIBRARY_LOGGERS)
        ):
            saved.append((obj, obj.handlers[:], obj.level, obj.propagate))
            obj.handlers = [handler]
    progress = os.environ.get(_PROGRESS_ENV)
    os.environ[_PROGRESS_ENV] = "false"
    stream_was = mlflow_stream.enabled if mlflow_stream is not None else None
    if mlflow_stream is not None:
        mlflow_stream.enabled = False
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        if mlflow_stream is not None:
            mlflow_stream.enabled = bool(stream_was)
        if progress is None:
            os.environ.pop(_PROGRESS_ENV, None)
        else:
            os.environ[_PROGRESS_ENV] = progress
        for logger, handlers, level, propagate in saved:
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        handler.close()


LEVEL_ENV = "RAYTRADER_LOG_LEVEL"
FORMAT_ENV = "RAYTRADER_LOG_FORMAT"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_RECORD_FIELDS = {*vars(logging.makeLogRecord({})), "message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601 with milliseconds), ``level``,
    ``logger``, ``message``, ``exception`` (the traceback) when there is one, and every field
    passed with ``extra=`` (values JSON cannot hold are written as their ``repr``)."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, object] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                plain = value is None or isinstance(value, str | int | float | bool)
                out[key] = value if plain else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]  # typeshed: generic in the stream
    """The handler :func:`configure_from_env` installs (found again and replaced, never doubled)."""


def configure_from_env(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """Level and format from ``RAYTRADER_LOG_LEVEL`` and ``RAYTRADER_LOG_FORMAT`` (see the module);
    None, and no change, when neither is set. A bad value is a :class:`ConfigError` naming it."""
    env = os.environ if env is None else env
    if LEVEL_ENV not in env and FORMAT_ENV not in env:
        return None
    level = (env.get(LEVEL_ENV) or "INFO").strip().upper()
    fmt = (env.get(FORMAT_ENV) or "json").strip().lower()
    if level not in LEVELS:
        raise ConfigError(
            f"{LEVEL_ENV}={env.get(LEVEL_ENV)!r}: expected one of {', '.join(LEVELS)}"
        )
    if fmt not in FORMATS:
        raise ConfigError(
            f"{FORMAT_ENV}={env.get(FORMAT_ENV)!r}: expected one of {', '.join(FORMATS)}"
        )
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    logging.getLogger("raytrader").setLevel(level)  # the libraries stay at WARNING (the root's)
    return level, fmt
