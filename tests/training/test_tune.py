"""Hyperparameter search: walk-forward windows, Ray Tune with ASHA + Optuna, nested MLflow runs,
and Tuner.restore resuming an interrupted search."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from raytrader.errors import ConfigError
from raytrader.training.tune import SearchConfig, fold_windows, run_search, window_sharpes

SPACE = {
    "fast": {"kind": "int", "low": 5, "high": 30},
    "slow": {"kind": "int", "low": 40, "high": 200},
}


def search(tmp_path: Path, **overrides: object) -> SearchConfig:
    fields: dict[str, object] = {
        "name": "s",
        "strategy": "ma_cross",
        "data": "goog",
        "space": SPACE,
        "num_samples": 6,
        "folds": 4,
        "output_dir": str(tmp_path / "tune"),
        # explicit, so a tracking URI in the environment cannot redirect the runs
        "tracking_uri": f"sqlite:///{(tmp_path / 'tune' / 'mlflow.db').resolve()}",
    }
    fields.update(overrides)
    return SearchConfig.parse(fields)


def test_windows_are_consecutive_and_leave_the_holdout_out(tmp_path: Path) -> None:
    cfg = search(tmp_path, folds=5, holdout_fraction=0.25, warmup_bars=100)
    w = fold_windows(2100, cfg)
    assert w[0][0] == 100
    assert all(a[1] == b[0] for a, b in itertools.pairwise(w))
    assert w[-1][1] == 2100 - int(2000 * 0.25)
    with pytest.raises(ConfigError, match="under 20 bars"):
        fold_windows(150, cfg)


def test_bad_search_configs() -> None:
    with pytest.raises(ConfigError, match="low < high"):
        SearchConfig.parse({"space": {"fast": {"kind": "int", "low": 5, "high": 5}}})
    with pytest.raises(ConfigError, match="at least one parameter"):
        SearchConfig.parse({"space": {}})
    with pytest.raises(ConfigError, match="grace_period"):
        SearchConfig.parse({"space": SPACE, "folds": 2, "grace_period": 3})


@pytest.mark.integration
@pytest.mark.slow
def test_search_with_asha_and_optuna_logs_nested_mlflow_runs(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = search(tmp_path)
    summary = run_search(cfg)
    assert summary["trials"] == 6
    assert summary["errors"] == 0
    # the reported optimum is the objective itself, reproducible without Tune
    assert summary["best_sharpe"] == pytest.approx(
        float(np.mean(list(window_sharpes(summary["best_params"], cfg)))), rel=0, abs=1e-12
    )
    client = MlflowClient(f"sqlite:///{(tmp_path / 'tune' / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("raytrader-tune-rule")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1
    assert len(children) == 6
    assert parents[0].data.metrics["best_sharpe"] == pytest.approx(summary["best_sharpe"])
    folds_run = [len(client.get_metric_history(c.info.run_id, "sharpe")) for c in children]
    assert max(folds_run) == 4  # metrics per window, batched by the callback
    assert min(folds_run) < 4  # ASHA stopped at least one trial early


def completed_trials(path: Path, folds: int = 4) -> int:
    """Trials whose result file reports the last window (Tune writes ``done: false`` there)."""
    n = 0
    for result in path.glob("*/result.json"):
        lines = result.read_text().strip().splitlines()
        if lines and json.loads(lines[-1]).get("fold") == folds:
            n += 1
    return n


@pytest.mark.integration
@pytest.mark.slow
def test_restore_resumes_an_interrupted_search(tmp_path: Path) -> None:
    cfg = search(
        tmp_path,
        data="synthetic:n_bars=200000,timeframe=5m,seed=2,symbol=SYN",
        num_samples=8,
        max_concurrent=1,
        scheduler="none",
        mlflow=False,
    )
    config_file = tmp_path / "search.json"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "raytrader.training.tune", "--config", str(config_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = Path(cfg.output_dir) / cfg.name
    deadline = time.monotonic() + 300
    while completed_trials(path) < 2:
        assert proc.poll() is None, "the search finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = completed_trials(path)
    assert before < 8

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 2
    assert "--restore" in again.stderr

    done = subprocess.run(
        [*cmd, "--restore"], capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 8
    assert completed_trials(path) == 8
