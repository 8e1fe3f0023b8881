"""Hyperparameter search: walk-forward windows, Ray Tune with ASHA + Optuna, nested MLflow runs,
Tuner.restore resuming an interrupted search, and the rule, supervised and RL targets."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from raytrader.errors import ConfigError
from raytrader.training.objectives import window_scores, with_params
from raytrader.training.tune import SearchConfig, fold_windows, run_search
from tests.support.markets import momentum_csv, pattern_csv

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

    cfg = search(tmp_path, register_as="ma-cross-best")
    summary = run_search(cfg)
    assert summary["trials"] == 6
    assert summary["errors"] == 0
    # the reported optimum is the objective itself, reproducible without Tune
    assert summary["best_sharpe"] == pytest.approx(
        float(np.mean(list(window_scores(summary["best_params"], cfg)))), rel=0, abs=1e-12
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
    # the best parameters are registered as a rule pyfunc, logged into the parent run
    assert summary["registered_version"] == "1"
    version = client.get_model_version("ma-cross-best", "1")
    assert version.run_id == parents[0].info.run_id
    assert version.tags["raytrader.kind"] == "rule"
    with pytest.raises(ConfigError, match="register_as is for the rule target"):
        search(
            tmp_path,
            target="supervised",
            base={"timeframe": "1h"},
            register_as="x",
            space={"threshold": {"kind": "float", "low": 0.5, "high": 0.6}},
        )


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


def test_with_params_sets_dotted_paths() -> None:
    base = {"params": {"max_depth": 3}, "threshold": 0.6}
    out = with_params(base, {"params.n_estimators": np.int64(50), "labels.horizon": 4})
    assert out == {
        "params": {"max_depth": 3, "n_estimators": 50},
        "threshold": 0.6,
        "labels": {"horizon": 4},
    }
    assert type(out["params"]["n_estimators"]) is int  # numpy scalars become plain values
    assert base == {"params": {"max_depth": 3}, "threshold": 0.6}  # base untouched
    with pytest.raises(ConfigError, match="'threshold' is not a section"):
        with_params(base, {"threshold.x": 1})


def test_bad_target_configs_fail_before_any_trial(tmp_path: Path) -> None:
    sup = {"target": "supervised", "base": {"timeframe": "5m"}}
    with pytest.raises(ConfigError, match="n_estimatorz"):
        SearchConfig.parse(
            {**sup, "space": {"params.n_estimatorz": {"kind": "int", "low": 5, "high": 9}}}
        )
    with pytest.raises(ConfigError, match="threshold"):
        SearchConfig.parse(
            {**sup, "space": {"threshold": {"kind": "float", "low": 0.5, "high": 1.5}}}
        )
    lr = {"lr": {"kind": "log", "low": 1e-5, "high": 1e-3}}
    with pytest.raises(ConfigError, match="the search sets them"):
        SearchConfig.parse({"target": "rl", "base": {"train_fraction": 0.6}, "space": lr})
    with pytest.raises(ConfigError, match="iterations"):
        SearchConfig.parse(
            {"target": "rl", "base": {"iterations": 2}, "grace_period": 3, "space": lr}
        )
    with pytest.raises(ConfigError, match="no bars to validate"):
        SearchConfig.parse(
            {"target": "rl", "train_fraction": 0.8, "holdout_fraction": 0.2, "space": lr}
        )
    cfg = SearchConfig.parse({"target": "rl", "space": lr})
    assert cfg.steps == 20
    assert cfg.progress_attr == "iteration"
    assert cfg.fractions == (0.5, 0.2)


def supervised_search(tmp_path: Path, **overrides: object) -> SearchConfig:
    fields: dict[str, object] = {
        "name": "sup",
        "target": "supervised",
        "data": momentum_csv(tmp_path / "momentum.csv", n=3000),
        "base": {
            "timeframe": "5m",
            "labels": {"kind": "fixed_horizon", "horizon": 3},
            "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 20},
            "validation": {"purge": 3},
        },
        "space": {
            "threshold": {"kind": "float", "low": 0.5, "high": 0.7},
            "params.max_depth": {"kind": "int", "low": 2, "high": 4},
        },
        "sim": {"commission": 0.0, "slippage_bps": 0.0},
        "folds": 3,
        "num_samples": 4,
        "search": "random",
        "output_dir": str(tmp_path / "tune"),
        "tracking_uri": f"sqlite:///{(tmp_path / 'tune' / 'mlflow.db').resolve()}",
    }
    fields.update(overrides)
    return SearchConfig.parse(fields)


def test_supervised_windows_train_only_on_the_past(tmp_path: Path) -> None:
    cfg = supervised_search(tmp_path)
    windows = fold_windows(3000, cfg)
    assert windows[0][0] == 200 + int(2800 * 0.5)  # after the training head
    assert windows[-1][1] == 3000 - int(2800 * 0.2)  # the holdout is never validated on
    params = {"threshold": 0.5, "params.max_depth": 3}
    a = list(window_scores(params, cfg))
    assert a == list(window_scores(params, cfg))  # seeded: exactly the same
    assert len(a) == 3
    # the momentum is real and costs are zero: the classifier trades it profitably out of sample
    assert np.mean(a) > 0.5
    # too short a training head for min_train is a clear error, not a silent score
    short = supervised_search(tmp_path, train_fraction=0.01)
    bigger = short.base | {"validation": {"purge": 3, "min_train": 400}}
    with pytest.raises(ConfigError, match="min_train=400"):
        list(window_scores(params, short.model_copy(update={"base": bigger})))


@pytest.mark.integration
@pytest.mark.slow
def test_supervised_search_reports_the_objective(tmp_path: Path) -> None:
    cfg = supervised_search(tmp_path)
    summary = run_search(cfg)
    assert summary["trials"] == 4
    assert summary["errors"] == 0
    assert summary["best_sharpe"] == pytest.approx(
        float(np.mean(list(window_scores(summary["best_params"], cfg)))), rel=0, abs=1e-12
    )
    # the best config is a complete ClassifierConfig, ready for `raytrader train supervised`
    assert summary["best_config"]["threshold"] == summary["best_params"]["threshold"]
    assert summary["best_config"]["params"]["max_iter"] == 20
    assert summary["best_config"]["fit_final"] is True  # not the trials' no-final-fit setting


def rl_search(tmp_path: Path, iterations: int, **overrides: object) -> SearchConfig:
    """Two PPO trials on the up/down-run market, seconds each."""
    fields: dict[str, object] = {
        "name": "rl",
        "target": "rl",
        "data": pattern_csv(tmp_path / "pattern.csv", n=2000),
        "base": {
            "iterations": iterations,
            "checkpoint_every": 2,
            "train_batch_size": 256,
            "minibatch_size": 64,
            "num_epochs": 2,
            "env": {"episode_length": 64},
        },
        "space": {"lr": {"kind": "log", "low": 1e-4, "high": 3e-3}},
        "folds": 2,
        "num_samples": 2,
        "search": "random",
        "output_dir": str(tmp_path / "tune"),
    }
    fields.update(overrides)
    return SearchConfig.parse(fields)


@pytest.mark.integration
@pytest.mark.slow
def test_rl_search_schedules_on_iterations_and_checkpoints(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = rl_search(
        tmp_path,
        iterations=3,
        max_concurrent=2,
        tracking_uri=f"sqlite:///{(tmp_path / 'tune' / 'mlflow.db').resolve()}",
    )
    summary = run_search(cfg)
    assert summary["trials"] == 2
    assert summary["errors"] == 0
    assert summary["completed"] >= 1
    assert np.isfinite(summary["best_sharpe"])
    assert summary["best_config"]["lr"] == summary["best_params"]["lr"]
    assert summary["best_config"]["iterations"] == 3
    trials = [p for p in Path(summary["path"]).iterdir() if (p / "result.json").exists()]
    reports = [
        [json.loads(line) for line in (t / "result.json").read_text().splitlines()] for t in trials
    ]
    # one report per RLlib iteration, each scoring both windows
    for rows in reports:
        assert [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))
        assert all({"fold_1_sharpe", "fold_2_sharpe"} <= set(r) for r in rows)
    # Tune checkpoints at iteration 2 and at the last one, for --restore to continue from
    full = [t for t, rows in zip(trials, reports, strict=True) if len(rows) == 3]
    assert full
    assert all(len(list(t.glob("checkpoint_*"))) == 2 for t in full)
    client = MlflowClient(cfg.tracking_uri)
    exp = client.get_experiment_by_name("raytrader-tune-rl")
    runs = client.search_runs([exp.experiment_id], max_results=20)
    assert len([r for r in runs if "mlflow.parentRunId" in r.data.tags]) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_restored_rl_search_continues_trials_from_their_checkpoints(tmp_path: Path) -> None:
    cfg = rl_search(tmp_path, iterations=6, max_concurrent=1, scheduler="none", mlflow=False)
    config_file = tmp_path / "search.json"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "raytrader.training.tune", "--config", str(config_file)]
    # Tune snapshots its experiment state (which checkpoint each trial has) every 10 s or so; a
    # kill loses what happened since. Snapshot every second so the kill below lands after one.
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    path = Path(cfg.output_dir) / cfg.name
    deadline = time.monotonic() + 300
    while not any(path.glob("*/checkpoint_*")):
        assert proc.poll() is None, "the search finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    done = subprocess.run(
        [*cmd, "--restore"], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 2
    assert summary["completed"] == 2
    rows = [
        [json.loads(line) for line in result.read_text().splitlines()]
        for result in path.glob("*/result.json")
    ]
    assert all(r[-1]["iteration"] == 6 for r in rows)
    # the interrupted trial went on from its checkpoint instead of training from scratch
    assert max(row["restored_from"] for r in rows for row in r) >= 2
