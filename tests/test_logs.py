"""Library output goes to the log file inside :func:`library_output_to`, and comes back after;
a deployment's processes log JSON (or text) at the level their environment names."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path

import pytest

from raytrader.errors import ConfigError
from raytrader.logs import LIBRARY_LOGGERS, configure_from_env, library_output_to


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


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (logging set up from nothing), with ``env`` added."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("RAYTRADER_LOG_")} | env
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120
    )


LOG_SOME = (
    "import logging; from raytrader.logs import configure_from_env; print(configure_from_env()); "
    "log = logging.getLogger('raytrader.streaming'); log.debug('hidden'); "
    "log.info('restored %d row(s)', 3, extra={'symbol': 'GOOG', 'obj': object}); "
    "logging.getLogger('feast').info('library info: hidden'); "
    "logging.getLogger('feast').warning('library warning');\n"
    "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('failed')"
)


def test_json_lines_with_the_level_from_the_environment() -> None:
    done = _run(LOG_SOME, RAYTRADER_LOG_LEVEL="info", RAYTRADER_LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "('INFO', 'json')"
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in lines] == [
        ("INFO", "raytrader.streaming", "restored 3 row(s)"),
        ("WARNING", "feast", "library warning"),
        ("ERROR", "raytrader.streaming", "failed"),
    ]
    assert lines[0]["symbol"] == "GOOG"
    assert lines[0]["obj"] == "<class 'object'>"
    assert lines[0]["time"].endswith("Z")
    assert datetime.fromisoformat(lines[0]["time"]).tzinfo is not None
    assert "ZeroDivisionError: division by zero" in lines[2]["exception"]


def test_text_format_and_defaults() -> None:
    done = _run(LOG_SOME, RAYTRADER_LOG_FORMAT="text")  # the level defaults to INFO
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.endswith(" INFO raytrader.streaming: restored 3 row(s)")
    # neither set: nothing is installed (a person at a terminal keeps Python's defaults)
    done = _run(LOG_SOME)
    assert done.stdout.strip() == "None"
    assert "restored 3 row(s)" not in done.stderr


def test_configuring_twice_replaces_the_handler() -> None:
    code = (
        "import logging; from raytrader.logs import configure_from_env; "
        "configure_from_env(); configure_from_env(); "
        "logging.getLogger('raytrader').warning('once')"
    )
    done = _run(code, RAYTRADER_LOG_LEVEL="WARNING")
    assert [json.loads(line)["message"] for line in done.stderr.splitlines()] == ["once"]


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"RAYTRADER_LOG_LEVEL='loud': expected one of DEBUG, INFO"
    ):
        configure_from_env({"RAYTRADER_LOG_LEVEL": "loud"})
    with pytest.raises(
        ConfigError, match=r"RAYTRADER_LOG_FORMAT='xml': expected one of json, text"
    ):
        configure_from_env({"RAYTRADER_LOG_FORMAT": "xml"})
    # and the CLI exits 2 with that message before doing anything
    cli = Path(sys.executable).with_name("raytrader")
    done = subprocess.run(
        [str(cli), "data", "list"], env={**os.environ, "RAYTRADER_LOG_FORMAT": "xml"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "RAYTRADER_LOG_FORMAT='xml': expected one of json, text" in done.stderr
