"""Where the libraries' own output goes while a command talks to a person.

MLflow, Ray, Feast, SQLAlchemy/Alembic and Python's warnings write progress bars, INFO lines and
deprecation notices to the terminal. :func:`library_output_to` sends all of it to a log file for
the duration of a block (the demo keeps it next to its report) and puts everything back afterwards;
``raytrader --debug`` skips it, so they print as usual.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

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
