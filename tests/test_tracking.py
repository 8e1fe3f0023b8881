"""MLflow tracking on the embedded SQLite store (the stack's server is covered by the demo test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from raytrader.errors import ConfigError
from raytrader.tracking import embedded_uri, log_run, resolve_uri


def test_uri_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_uri(None, tmp_path) == "http://127.0.0.1:5000"
    assert resolve_uri("sqlite:///x.db", tmp_path) == "sqlite:///x.db"


@pytest.mark.slow
def test_log_run_on_the_embedded_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    art = tmp_path / "report"
    art.mkdir()
    (art / "run.json").write_text("{}")
    uri, run_id = log_run(
        experiment="t",
        run_name="r1",
        params={"data": "goog"},
        metrics={"sharpe": 0.5, "sortino": float("nan")},
        tags={"k": "v"},
        artifacts=art,
        root=tmp_path / "runs",
    )
    assert uri == embedded_uri(tmp_path / "runs")
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"data": "goog"}
    assert run.data.metrics == {"sharpe": 0.5}
    assert run.data.tags["raytrader.skipped_metrics"] == "sortino"
    assert [a.path for a in MlflowClient(uri).list_artifacts(run_id)] == ["run.json"]
    assert (tmp_path / "runs" / "mlartifacts").is_dir()
    # a second run reuses the experiment
    _, second = log_run(
        experiment="t", run_name="r2", params={}, metrics={}, root=tmp_path / "runs"
    )
    assert MlflowClient(uri).get_run(second).info.experiment_id == run.info.experiment_id


def test_unreachable_server_names_the_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail now, not after backoff
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(ConfigError, match=re.escape("http://127.0.0.1:9")):
        log_run(
            experiment="t",
            run_name="r",
            params={},
            metrics={},
            tracking_uri="http://127.0.0.1:9",
            root=tmp_path,
        )
