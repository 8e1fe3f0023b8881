"""Hyperparameter search: walk-forward windows, Ray Tune with ASHA + Optuna, nested MLflow runs,
Tuner.restore resuming an interrupted search, the rule, supervised and RL targets, and the honest
report: the holdout scored once for the selected config, the no-trades rule, the Deflated Sharpe
Ratio and the selection-window tags."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raytrader.data.bars import Bars, make_frame
from raytrader.errors import ConfigError
from raytrader.training.objectives import (
    NO_TRADES_SCORE,
    holdout_evaluation,
    objective,
    trial_report,
    window_scores,
    with_params,
)
from raytrader.training.tune import (
    SearchConfig,
    fold_windows,
    holdout_window,
    run_search,
    select_best,
    tally_trials,
)
from tests.support.markets import momentum_csv, pattern_csv

SPACE = {
    "fast": {"kind": "int", "low": 5, "high": 30},
    "slow": {"kind": "int", "low": 40, "high": 200},
}


def same(a: object, b: object) -> bool:
    """Equal as JSON (NaN metrics, e.g. the win rate of a single open trade, compare equal)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


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
    assert holdout_window(2100, cfg) == (w[-1][1], 2100)  # the tail right after the last window
    assert holdout_window(2100, cfg.model_copy(update={"holdout_fraction": 0.0})) == (2100, 2100)
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
    counts = ("completed", "stopped_early", "no_trades", "invalid", "errors")
    assert sum(summary[k] for k in counts) == 6
    # the reported optimum is the objective itself, reproducible without Tune
    best = summary["best_params"]
    assert summary["best_validation_sharpe"] == pytest.approx(
        objective(list(window_scores(best, cfg))), rel=0, abs=1e-12
    )
    assert "biased upward" in summary["best_validation_sharpe_note"]
    # the holdout: the selected config's one evaluation, the tail after the last window
    holdout = summary["holdout"]
    assert same(holdout, holdout_evaluation(cfg, best))
    assert holdout["start_bar"] == summary["selection"]["end_bar"] + 1
    assert set(holdout) >= {"best", "buy_and_hold", "start", "end", "end_bar"}
    dsr = summary["deflated_sharpe"]
    assert 0.0 <= dsr["dsr"] <= 1.0
    assert dsr["trials"] == summary["completed"] + summary["stopped_early"] + summary["no_trades"]
    client = MlflowClient(f"sqlite:///{(tmp_path / 'tune' / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("raytrader-tune-rule")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1
    assert len(children) == 6
    logged = parents[0].data.metrics
    assert logged["best_validation_sharpe"] == pytest.approx(summary["best_validation_sharpe"])
    assert logged["deflated_sharpe_ratio"] == pytest.approx(dsr["dsr"])
    assert logged["holdout_sharpe"] == pytest.approx(holdout["best"]["sharpe"])
    assert logged["holdout_buy_and_hold_sharpe"] == pytest.approx(holdout["buy_and_hold"]["sharpe"])
    assert logged["trials_completed"] == summary["completed"]
    folds_run = [len(client.get_metric_history(c.info.run_id, "sharpe")) for c in children]
    assert max(folds_run) == 4  # metrics per window, batched by the callback
    assert min(folds_run) < 4  # ASHA stopped at least one trial early
    # the best parameters are registered as a rule pyfunc, logged into the parent run, tagged
    # with the bars the selection read and the holdout, not the whole data range
    assert summary["registered_version"] == "1"
    version = client.get_model_version("ma-cross-best", "1")
    assert version.run_id == parents[0].info.run_id
    tags = version.tags
    assert tags["raytrader.kind"] == "rule"
    sel = summary["selection"]
    assert (tags["raytrader.selection.start_bar"], tags["raytrader.selection.end_bar"]) == (
        str(sel["start_bar"]),
        str(sel["end_bar"]),
    )
    assert tags["raytrader.selection.start"] == sel["start"]
    assert tags["raytrader.selection.end"] == sel["end"]
    assert tags["raytrader.holdout.start"] == holdout["start"]
    assert tags["raytrader.holdout.end"] == holdout["end"]
    assert tags["raytrader.holdout.start_bar"] == str(holdout["start_bar"])
    assert tags["raytrader.data"].startswith("goog ")
    assert tags["raytrader.data"].endswith(f"..{sel['end']}")  # never the holdout's bars
    assert float(tags["raytrader.search.holdout_sharpe"]) == pytest.approx(
        holdout["best"]["sharpe"]
    )
    assert float(tags["raytrader.search.deflated_sharpe_ratio"]) == pytest.approx(dsr["dsr"])
    # the experiment store holds the search and every trial, with its score per window
    trials = stored_trials(summary)
    assert len(trials) == 6
    assert sorted(t.status for t in trials).count("stopped_early") == summary["stopped_early"]
    winner = max((t for t in trials if t.status == "completed"), key=lambda t: t.score)
    assert winner.score == summary["best_validation_sharpe"]
    assert winner.params == best
    traded = [w for w in winner.window_scores if w is not None]
    assert len(winner.window_scores) == 4
    assert np.mean(traded) == pytest.approx(summary["best_validation_sharpe"], rel=0, abs=1e-12)
    assert any(t.early_stopped for t in trials)
    with pytest.raises(ConfigError, match="register_as is for the rule target"):
        search(
            tmp_path,
            target="supervised",
            base={"timeframe": "1h"},
            register_as="x",
            space={"threshold": {"kind": "float", "low": 0.5, "high": 0.6}},
        )


def stored_trials(summary: dict[str, Any]) -> list[Any]:
    """The trials the experiment store holds for a search's summary."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from raytrader.db.engine import make_engine
    from raytrader.db.models import Optimization, Trial

    engine = make_engine()
    try:
        with Session(engine) as s:
            opt = s.get(Optimization, summary["store_optimization_id"])
            assert opt is not None
            assert opt.best_score == summary["best_validation_sharpe"]
            trials = s.scalars(select(Trial).where(Trial.optimization_id == opt.id)).all()
            s.expunge_all()
            return list(trials)
    finally:
        engine.dispose()


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
    # the resumed search is one optimization in the store, each trial once
    assert len({t.key for t in stored_trials(summary)}) == len(stored_trials(summary)) == 8


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
    b = list(window_scores(params, cfg))
    assert [s.sharpe for s in a] == [s.sharpe for s in b]  # seeded: exactly the same
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.returns, y.returns)
    assert len(a) == 3
    assert all(s.traded for s in a)
    # the momentum is real and costs are zero: the classifier trades it profitably out of sample
    assert objective(a) > 0.5
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
    assert summary["best_validation_sharpe"] == pytest.approx(
        objective(list(window_scores(summary["best_params"], cfg))), rel=0, abs=1e-12
    )
    # refitted on everything before the holdout, scored there once, next to buy-and-hold
    holdout = summary["holdout"]
    assert same(holdout, holdout_evaluation(cfg, summary["best_params"]))
    assert holdout["start_bar"] == holdout_window(3000, cfg)[0]
    assert holdout["end_bar"] == 2999
    assert np.isfinite(holdout["best"]["sharpe"])
    assert holdout["buy_and_hold"]["num_trades"] == 1
    assert 0.0 <= summary["deflated_sharpe"]["dsr"] <= 1.0
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
    assert np.isfinite(summary["best_validation_sharpe"])
    # the selected trial's final agent (its last checkpoint) plays the holdout once
    holdout = summary["holdout"]
    assert "skipped" not in holdout, holdout
    assert holdout["start_bar"] >= holdout_window(2000, cfg)[0]
    assert holdout["end_bar"] == 1999
    assert np.isfinite(holdout["best"]["final_equity"])
    assert np.isfinite(holdout["buy_and_hold"]["sharpe"])
    assert summary["best_config"]["lr"] == summary["best_params"]["lr"]
    assert summary["best_config"]["iterations"] == 3
    trials = [p for p in Path(summary["path"]).iterdir() if (p / "result.json").exists()]
    reports = [
        [json.loads(line) for line in (t / "result.json").read_text().splitlines()] for t in trials
    ]
    # one report per RLlib iteration, each scoring both windows (a Sharpe per window it traded in)
    for rows in reports:
        assert [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(r["windows"] == 2 for r in rows)
        for r in rows:
            traded = {f"fold_{i}_sharpe" for i in (1, 2)} & set(r)
            assert len(traded) == r["traded_windows"]
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


# --- the honest report: no trades, Deflated Sharpe Ratio, the holdout ------------------------


def ar1_bars(
    n: int, phi: float, seed: int, *, tail: int = 0, tail_drift: float = 0.0
) -> pd.DataFrame:
    """5m bars with AR(1) log returns (``phi``); the last ``tail`` bars instead rise by
    ``tail_drift`` per bar around which the returns revert (AR(1), -0.5). Opens equal the previous
    close."""
    rng = np.random.default_rng(seed)
    eps = rng.normal(0.0, 0.001, n)
    r = np.empty(n)
    r[0] = eps[0]
    for i in range(1, n):
        r[i] = (phi if i < n - tail else -0.5) * r[i - 1] + eps[i]
    if tail:
        r[n - tail :] += tail_drift
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate(([100.0], close[:-1]))
    frame = make_frame(
        pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC"),
        open_,
        np.maximum(open_, close) * 1.0002,
        np.minimum(open_, close) * 0.9998,
        close,
        np.full(n, 1000.0),
    )
    Bars.from_frame(frame, symbol="AR", timeframe="5m")  # valid by the bars contract
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path)
    return str(path)


def momentum_search(tmp_path: Path, data: str, **overrides: object) -> SearchConfig:
    fields: dict[str, object] = {
        "name": "mom",
        "strategy": "momentum",
        "data": data,
        "base": {"period": 1},
        "space": {"threshold": {"kind": "choice", "values": [0.0, 9.0]}},
        "folds": 3,
        "num_samples": 4,
        "scheduler": "none",
        "search": "random",
        "max_concurrent": 2,
        "mlflow": False,
        "output_dir": str(tmp_path / "tune"),
    }
    fields.update(overrides)
    return SearchConfig.parse(fields)


def test_a_window_without_trades_has_no_score_not_zero(tmp_path: Path) -> None:
    # mean-reverting returns: a one-bar momentum rule loses, net of costs, in every window
    data = write_csv(ar1_bars(2000, -0.5, 1), tmp_path / "revert.csv")
    cfg = momentum_search(tmp_path, data)
    losing = list(window_scores({"threshold": 0.0}, cfg))
    idle = list(window_scores({"threshold": 9.0}, cfg))  # a 900% move per bar never happens
    assert all(s.traded and s.sharpe < 0.0 for s in losing)
    assert not any(s.traded for s in idle)
    assert all(np.isnan(s.sharpe) for s in idle)  # not 0, which would beat every loser
    assert objective(losing) < 0.0
    assert np.isnan(objective(idle))
    # to the scheduler a trial that has not traded yet reports the floor, below any real score
    assert trial_report(idle) == {"sharpe": NO_TRADES_SCORE, "windows": 3, "traded_windows": 0}
    # a window that did not trade is left out of the mean, not averaged in as 0
    mixed = [losing[0], idle[1], losing[2]]
    assert objective(mixed) == pytest.approx((losing[0].sharpe + losing[2].sharpe) / 2)
    report = trial_report(mixed)
    assert report["traded_windows"] == 2
    assert report["bar_count"] == len(losing[0].returns) + len(losing[2].returns)


def trial(sharpe: float, step: int, traded: int, **extra: object) -> SimpleNamespace:
    metrics: dict[str, object] = {"sharpe": sharpe, "fold": step, "traded_windows": traded}
    metrics.update(extra)
    return SimpleNamespace(metrics=metrics, error=None, config={"x": sharpe})


def test_a_config_that_never_trades_cannot_be_selected(tmp_path: Path) -> None:
    cfg = search(tmp_path)  # 4 folds
    losing = trial(-0.8, 4, 4, bar_sharpe=-0.05)
    idle = trial(NO_TRADES_SCORE, 4, 0)
    idle_early = trial(NO_TRADES_SCORE, 1, 0)
    stopped = trial(0.9, 2, 2, bar_sharpe=0.06)  # better so far, but stopped early
    invalid = SimpleNamespace(metrics={"sharpe": -10.0, "fold": 4, "invalid": "x"}, error=None)
    errored = SimpleNamespace(metrics={}, error=RuntimeError("boom"))
    tally = tally_trials([losing, idle, idle_early, stopped, invalid, errored], cfg)
    assert tally.counts() == {
        "completed": 1,
        "stopped_early": 1,
        "no_trades": 2,
        "invalid": 1,
        "errors": 1,
    }
    assert len(tally.scored) == 4  # the N of the deflated Sharpe: every trial that ran a window
    assert select_best(tally, cfg) is losing  # doing nothing does not beat a losing config
    with pytest.raises(ConfigError, match="no trial that ran to the end ever traded"):
        select_best(tally_trials([idle, idle_early], cfg), cfg)


def test_rule_holdout_is_the_tail_backtested_alone_next_to_buy_and_hold(tmp_path: Path) -> None:
    from raytrader.backtest.engine import run_targets
    from raytrader.data.sources import load_bars
    from raytrader.strategies.base import make_strategy

    cfg = search(tmp_path)
    params = {"fast": 10, "slow": 50}
    result = holdout_evaluation(cfg, params)
    bars = load_bars("goog")
    lo, hi = holdout_window(len(bars), cfg)
    assert (result["start_bar"], result["end_bar"]) == (lo, hi - 1)
    assert result["start"] == bars.index[lo].isoformat()
    mask = np.zeros(len(bars), dtype=bool)
    mask[lo:hi] = True
    tail = bars.head_mask(mask)
    targets = make_strategy("ma_cross", params).target_positions(bars.frame).to_numpy()[lo:hi]
    _, direct = run_targets(tail, targets, cfg.sim)
    assert result["best"]["sharpe"] == pytest.approx(float(direct["sharpe"][0]))
    _, hold = run_targets(tail, np.ones(hi - lo), cfg.sim)
    assert result["buy_and_hold"]["total_return"] == pytest.approx(float(hold["total_return"][0]))
    assert not result["no_trades"]
    none = holdout_evaluation(cfg.model_copy(update={"holdout_fraction": 0.0}), params)
    assert "no held-out tail" in none["skipped"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_do_nothing_config_does_not_win_the_search(tmp_path: Path) -> None:
    data = write_csv(ar1_bars(2000, -0.5, 1), tmp_path / "revert.csv")
    summary = run_search(momentum_search(tmp_path, data))
    # both choices were tried (seeded), the idle one as "no_trades"
    assert summary["no_trades"] >= 1
    assert summary["completed"] >= 1
    # before: threshold 9 (never trades, every window 0) beat the losing threshold 0
    assert summary["best_params"] == {"threshold": 0.0}
    assert summary["best_validation_sharpe"] < 0.0
    assert summary["best_traded_windows"] == 3
    # it loses on the holdout too, and the report shows buy-and-hold beside it
    assert summary["holdout"]["best"]["num_trades"] > 0
    assert np.isfinite(summary["holdout"]["buy_and_hold"]["sharpe"])


@pytest.mark.integration
@pytest.mark.slow
def test_the_holdout_is_scored_once_and_never_selects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two series equal up to the holdout: momentum that follows the last return wins on the
    autocorrelated validation windows; on one series the tail is a steady rise where the slow
    rule would win. The tail changes the holdout numbers only, never the selection."""
    import raytrader.training.tune as tune_module

    n, tail = 3000, int(2800 * 0.2)
    plain = write_csv(ar1_bars(n, 0.5, 0), tmp_path / "plain.csv")
    rising = write_csv(ar1_bars(n, 0.5, 0, tail=tail, tail_drift=0.0003), tmp_path / "rising.csv")
    fields: dict[str, Any] = {
        "space": {"period": {"kind": "choice", "values": [1, 100]}},
        "base": {},
        "num_samples": 6,
        "sim": {"commission": 0.0, "slippage_bps": 0.0},
    }
    calls: list[dict[str, Any]] = []
    real = tune_module.holdout_evaluation

    def counted(config: SearchConfig, params: Any, checkpoint: Any = None) -> dict[str, Any]:
        calls.append(dict(params))
        return real(config, params, checkpoint)

    monkeypatch.setattr(tune_module, "holdout_evaluation", counted)
    a = run_search(momentum_search(tmp_path, plain, name="plain", **fields))
    assert calls == [a["best_params"]]  # once, for the selected config only
    b = run_search(momentum_search(tmp_path, rising, name="rising", **fields))
    assert len(calls) == 2
    assert a["completed"] == b["completed"] == 6  # both periods were tried
    # the holdout never reached the selection: same winner, same validation numbers
    assert a["best_params"] == b["best_params"] == {"period": 1}
    assert a["best_validation_sharpe"] == b["best_validation_sharpe"]
    assert same(a["deflated_sharpe"], b["deflated_sharpe"])
    assert a["selection"] == b["selection"]
    assert a["holdout"]["best"]["sharpe"] != b["holdout"]["best"]["sharpe"]
    # on the rising tail the slow rule, which lost the selection, would have won the holdout
    slow = holdout_evaluation(momentum_search(tmp_path, rising, **fields), {"period": 100})
    assert slow["best"]["sharpe"] > b["holdout"]["best"]["sharpe"] + 1.0
