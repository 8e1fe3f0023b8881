"""Library output goes to the log file inside :func:`library_output_to`, and comes back after."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from raytrader.logs import LIBRARY_LOGGERS, library_output_to


def test_library_logs_warnings_and_mlflow_prints_go_to_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow.pyfunc  # noqa: F401 - libraries set their loggers up when imported
    import ray  # noqa: F401
    from mlflow.utils.logging_utils import eprint

    log = tmp_path / "lib.log"
    before = {name: logging.getLogger(name).handlers[:] for name in LIBRARY_LOGGERS}
    with library_output_to(log):
        logging.getLogger("mlflow.pyfunc").warning("serialized with CloudPickle")
        logging.getLogger("ray").info("Connecting to existing Ray cluster")
        logging.getLogger("sqlalchemy.orm").info("mapper detail nobody needs")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("noload is deprecated", DeprecationWarning, stacklevel=1)
        eprint("Successfully registered model 'x'.")
    out, err = capsys.readouterr()
    assert out + err == ""
    text = log.read_text()
    assert "CloudPickle" in text
    assert "Connecting to existing Ray cluster" in text
    assert "noload is deprecated" in text
    assert "mapper detail" not in text  # SQLAlchemy's INFO lines are below the kept level
    # everything is put back
    assert {n: logging.getLogger(n).handlers for n in LIBRARY_LOGGERS} == before
    eprint("printed again")
    assert "printed again" in capsys.readouterr().err
